"""Pictures from people go through `generator.intake`: limits before decoding, four decoders,
a re-encoded copy. Real Pillow on real (and hostile) files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from generator.contract.errors import ImageInputError
from generator.contract.images import MAX_INPUT_BYTES, MAX_INPUT_SIDE
from generator.intake.images import check_declared, from_file, from_upload, reencode, sha256

from .pictures import encoded, noise, png_claiming


def _refused(data: bytes) -> str:
    with pytest.raises(ImageInputError) as caught:
        reencode(data)
    return str(caught.value)


def test_a_bomb_is_refused_from_its_header() -> None:
    data = png_claiming(20_000, 20_000)
    assert len(data) < 200
    assert "too many pixels (at most 16.8 million)" in _refused(data)
    # Just over the limit, where Pillow would only warn: refused as well.
    assert "too many pixels" in _refused(png_claiming(4100, 4100))


def test_other_formats_text_and_damaged_files_are_refused() -> None:
    picture = noise(300, 200)
    assert _refused(encoded(picture, "BMP")) == "the file is not a PNG, JPEG, WebP or GIF picture"
    assert _refused(encoded(picture, "TIFF")) == "the file is not a PNG, JPEG, WebP or GIF picture"
    assert _refused(b"just some text, named picture.png") == (
        "the file is not a PNG, JPEG, WebP or GIF picture"
    )
    jpeg = encoded(picture, "JPEG")
    assert _refused(jpeg[: len(jpeg) // 2]) == "the picture is damaged or cut short"


def test_a_file_over_8_mib_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (9 * 2**20))
    with pytest.raises(ImageInputError, match=r"too big \(9 MiB; at most 8 MiB\)"):
        from_file(big)
    assert "too big" in _refused(b"\0" * (MAX_INPUT_BYTES + 1))


@pytest.mark.parametrize(
    ("size", "content_type", "width", "height", "message"),
    [
        (9 * 2**20, "image/png", 10, 10, "too big"),
        (1000, "image/bmp", 10, 10, "of type image/bmp"),
        (1000, "text/plain; charset=utf-8", None, None, "of type text/plain"),
        (1000, None, None, None, "of type unknown"),
        (1000, "image/png", 20_000, 20_000, "too many pixels"),
    ],
)
def test_declared_limits_refuse_before_any_download(
    size: int, content_type: str | None, width: int | None, height: int | None, message: str
) -> None:
    with pytest.raises(ImageInputError, match=message):
        check_declared(size, content_type, width, height)


def test_declared_pictures_within_the_limits_pass() -> None:
    for kind in ("image/png", "image/jpeg", "image/webp", "IMAGE/GIF"):
        check_declared(MAX_INPUT_BYTES, kind, 4096, 4096)


def test_the_copy_is_an_upright_rgb_png_of_the_first_frame_at_most_1024() -> None:
    wide = noise(2000, 1000)
    copy = Image.open(io.BytesIO(reencode(encoded(wide, "WEBP"))))
    assert (copy.format, copy.mode, copy.size) == ("PNG", "RGB", (MAX_INPUT_SIDE, 512))

    # EXIF orientation 6 (rotate 90° clockwise to view): a 40x20 file is a 20x40 picture.
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = Image.open(io.BytesIO(reencode(encoded(noise(40, 20), "JPEG", exif=exif))))
    assert turned.size == (20, 40)

    red, blue = Image.new("RGB", (32, 32), "red"), Image.new("RGB", (32, 32), "blue")
    gif = encoded(red, "GIF", save_all=True, append_images=[blue])
    first = Image.open(io.BytesIO(reencode(gif)))
    assert first.getpixel((5, 5)) == (255, 0, 0)
    assert getattr(first, "n_frames", 1) == 1

    with_alpha = Image.new("RGBA", (16, 16), (0, 255, 0, 128))
    assert Image.open(io.BytesIO(reencode(encoded(with_alpha, "PNG")))).mode == "RGB"


def test_uploads_keep_the_copys_hash_and_files_the_files(tmp_path: Path) -> None:
    data = encoded(noise(64, 48), "JPEG")
    upload = from_upload(data, "photo.jpg", 2.0)
    assert (upload.name, upload.weight) == ("photo.jpg", 2.0)
    assert upload.sha256 == sha256(upload.png) != sha256(data)
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    local = from_file(path)
    assert local.sha256 == sha256(data)
    assert local.png == upload.png
    assert "png=" not in repr(local)
    assert local.sha256[:12] in repr(local)
