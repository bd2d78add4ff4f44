"""What a step keeps in memory: the activations autograd saves for the backward pass.

`kept_bytes` measures them on any device, the `meta` device included, where networks of any size
cost nothing to build or run: that is how the figures in `generator.contract.quality` were
measured (and are checked by the tests).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def kept_bytes(step: Callable[[], object]) -> int:
    """Bytes of the activations autograd keeps from `step`'s forward pass for its backward pass:
    every tensor it saves that is computed from what requires a gradient (weights and constants
    are not counted). An upper bound: a tensor that two operations save counts twice."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if tensor.requires_grad or tensor.grad_fn is not None:
            total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return total
