"""Pictures for tests: real files in the formats people send, and hostile ones."""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image

from generator.contract.images import ImageInput
from generator.intake.images import from_upload


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header says width x height: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def noise(width: int, height: int) -> Image.Image:
    return Image.effect_noise((width, height), 64).convert("RGB")


def picture(seed: int = 0) -> ImageInput:
    """A Mandelbrot set (or, for other seeds, noise): something with structure to encode."""
    if seed == 0:
        image = Image.effect_mandelbrot((96, 80), (-2.0, -1.2, 1.0, 1.2), 40).convert("RGB")
    else:
        image = Image.frombytes("RGB", (96, 80), random.Random(seed).randbytes(96 * 80 * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return from_upload(buffer.getvalue(), f"picture-{seed}.png")
