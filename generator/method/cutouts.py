"""Random crops of the image for CLIP, all made in one differentiable `grid_sample` call, and
scaled for each CLIP model that takes a smaller side."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from generator.contract.settings import DrawSettings


def cutout_transforms(
    settings: DrawSettings,
    generator: torch.Generator,
    device: torch.device,
    mean: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Affine maps (N, 2, 3) from a cutout's coordinates to the image's, for one job.

    Sizes follow the reference: a normal around `mean` (default `cut_size_mean`; a 0-d tensor on
    the device when a schedule moves it, so a captured step reads it at every replay) of the
    shorter side, clipped to [cut_size_min, cut_size_max]; positions are uniform over the image;
    rotations and flips are optional.
    """
    n = settings.cutouts
    width, height = settings.width, settings.height
    centre = settings.cut_size_mean if mean is None else mean
    sizes = torch.randn(n, generator=generator, device=generator.device)
    sizes = (sizes * settings.cut_size_std + centre).clamp(
        settings.cut_size_min, settings.cut_size_max
    )
    side = sizes * min(width, height)  # crop side in pixels
    u = torch.rand(2, n, generator=generator, device=generator.device)
    centre_x = (u[0] * (width - side) + side / 2) / width * 2 - 1
    centre_y = (u[1] * (height - side) + side / 2) / height * 2 - 1
    angle = torch.zeros(n, device=generator.device)
    if settings.rotation_degrees:
        spread = torch.rand(n, generator=generator, device=generator.device) * 2 - 1
        angle = spread * math.radians(settings.rotation_degrees)
    mirror = torch.ones(n, device=generator.device)
    if settings.flip:
        coin = torch.rand(n, generator=generator, device=generator.device)
        mirror = torch.where(coin < 0.5, -1.0, 1.0)
    cos, sin = angle.cos(), angle.sin()
    scale_x, scale_y = side / width, side / height
    theta = torch.stack(
        [
            torch.stack([scale_x * cos * mirror, -scale_x * sin, centre_x], dim=1),
            torch.stack([scale_y * sin * mirror, scale_y * cos, centre_y], dim=1),
        ],
        dim=1,
    )  # (N, 2, 3)
    return theta.to(device)


def wrapped(
    images: torch.Tensor,
    transforms: torch.Tensor,
    generators: list[torch.Generator],
    tile: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cutouts of seamless tiles: the images (B, 3, H, W) repeated twice along each axis in
    `tile`, and the maps (B, N, 2, 3) moved onto that canvas, each job's shifted by a random
    offset of up to one period (one draw of its generator a step, on the device), so that CLIP
    also sees crops across the picture's edges, as a tiled wall shows them."""
    rows = [row for row, axis in ((0, "x"), (1, "y")) if axis in tile]  # a map's rows: x, y
    canvas = images.repeat(1, 1, 2 if 1 in rows else 1, 2 if 0 in rows else 1)
    offsets = torch.stack([torch.rand(2, generator=g, device=g.device) for g in generators]).to(
        transforms.device
    )  # (B, 2): x then y, in periods
    moved = transforms.clone()
    for row in rows:
        # The canvas spans two periods: the picture's [-1, 1] is its [-1, 0], then shifted.
        moved[:, :, row] = transforms[:, :, row] / 2
        moved[:, :, row, 2] += offsets[:, row, None] - 0.5
    return canvas, moved


def make_cutouts(images: torch.Tensor, transforms: torch.Tensor, size: int) -> torch.Tensor:
    """Sample N crops per image: images (B, 3, H, W), transforms (B, N, 2, 3) -> (B*N, 3, s, s).

    The N crops of an image are laid side by side in one sampling grid, so the whole batch is a
    single `grid_sample` without copying the image N times.
    """
    batch, n = transforms.shape[:2]
    grid = F.affine_grid(
        transforms.reshape(batch * n, 2, 3), [batch * n, 3, size, size], align_corners=False
    )  # (B*N, s, s, 2)
    grid = grid.reshape(batch, n * size, size, 2)
    crops = F.grid_sample(
        images, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )  # (B, 3, N*s, s)
    crops = crops.reshape(batch, 3, n, size, size).transpose(1, 2)  # (B, N, 3, s, s)
    return crops.reshape(batch * n, 3, size, size)


def resized(cutouts: torch.Tensor, size: int) -> torch.Tensor:
    """Cutouts (M, 3, s, s) scaled to (M, 3, size, size) for a CLIP that takes another side;
    unchanged when it takes this one. Bilinear without antialiasing, as `grid_sample` cuts."""
    if cutouts.shape[-1] == size:
        return cutouts
    return F.interpolate(
        cutouts, size=(size, size), mode="bilinear", align_corners=False, antialias=False
    )
