"""Image values of every shape a source holds become content-named PNG/JPEG files."""

import io
from pathlib import Path

import pytest
from PIL import Image

from vlmcot.adapters.images import ImageError, concat_images, save_bytes, save_image


def _encode(img, fmt):
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_png_and_jpeg_kept_byte_for_byte_and_deduplicated(tmp_path, hub):
    p1 = save_image({"bytes": hub.png(), "path": None}, tmp_path)
    p2 = save_image(hub.png(), tmp_path)
    j = save_image(hub.jpeg(), tmp_path)
    assert p1 == p2 and p1.endswith(".png") and j.endswith(".jpg")
    assert Path(p1).read_bytes() == hub.png() and Path(j).read_bytes() == hub.jpeg()
    assert len(list(tmp_path.iterdir())) == 2


def test_other_formats_and_pil_images_become_png(tmp_path):
    gif = _encode(Image.new("P", (5, 5), 3), "GIF")
    out = save_bytes(gif, tmp_path)
    assert out.endswith(".png")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (5, 5)
    cmyk = save_image(Image.new("CMYK", (3, 2)), tmp_path)
    with Image.open(cmyk) as im:
        assert im.mode == "RGB"


def test_paths_relative_to_base_dir(tmp_path, hub):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.png").write_bytes(hub.png())
    out = save_image("a.png", tmp_path / "out", base_dir=tmp_path / "src")
    assert Path(out).read_bytes() == hub.png()
    with pytest.raises(ImageError, match="not found"):
        save_image("missing.png", tmp_path / "out", base_dir=tmp_path / "src")


@pytest.mark.parametrize("value", [None, b"", b"GIF89a-truncated", {"bytes": None, "path": None}, 3])
def test_bad_values_raise_image_error(tmp_path, value):
    with pytest.raises(ImageError):
        save_image(value, tmp_path)


def test_truncated_png_is_rejected(tmp_path, hub):
    with pytest.raises(ImageError, match="decoded"):
        save_bytes(hub.png(size=(64, 64))[:-30], tmp_path)
    assert not any(tmp_path.iterdir())


def test_concat_side_by_side(hub):
    data = concat_images([hub.png((255, 0, 0), (4, 3)), hub.png((0, 0, 255), (2, 5))], gap=1)
    im = Image.open(io.BytesIO(data))
    assert im.size == (7, 5)
    assert im.getpixel((0, 0)) == (255, 0, 0) and im.getpixel((4, 0)) == (255, 255, 255)
    assert im.getpixel((5, 4)) == (0, 0, 255) and im.getpixel((0, 4)) == (255, 255, 255)
