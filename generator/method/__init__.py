"""The method: the latent grid of logits, its Gumbel-softmax relaxation, cutouts, the CLIP
objective, the fast networks and CUDA graphs, the engine's loop and batches, the PNG output, and
what a step keeps in memory.

May import: `generator.models` and `generator.contract`; never the worker or the CLI.
"""
