"""What the bot and the workers share: protocol messages, draw settings and their defaults and
limits, the quality presets (and what a job costs in work and memory), the time-lapse's limits,
prompt parsing, cleaning and token limits, errors, Redis key names, metrics addresses, thread
policy, and the weights manager (where weights come from; the bot fetches tokenizers through
it).

May import: the standard library, pydantic, and the tokenizers' own small libraries, never
torch, numpy, PIL or discord (import-linter checks it), nor any other part of `generator`.
"""
