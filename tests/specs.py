"""A job's spec for tests: a small valid one (64x64, 2 cutouts, a progress report every step),
with whatever a test changes."""

from __future__ import annotations

from generator.contract.jobs import JobSpec

A_SPEC = JobSpec(
    prompt="a cat",
    seed=1,
    iterations=10,
    width=64,
    height=64,
    quality="draft",
    cutouts=2,
    clip_models=("ViT-B/32",),
    progress_every_s=0.0,
)


def a_spec(**changes: object) -> JobSpec:
    """`A_SPEC` with `changes`, validated again."""
    return JobSpec.model_validate({**A_SPEC.model_dump(), **changes})
