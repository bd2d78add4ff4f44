"""The workers: one core (admit, step, report; `core`, with what a job becomes for the engine in
`jobs`) and its transports side by side, the bot's child process over stdin/stdout
(`python -m generator.worker`) and Redis Streams (`pseudo-dalle worker`), which build it the one
way `build` does; with device choice, how many jobs its memory holds (`admission`), its
Prometheus metrics and the options they share with the CLI.

May import: the method, the models and the contract; never the CLI. Modules a command line
imports before it knows what it will run (`options`, `redis_streams`) import torch only inside
functions.
"""
