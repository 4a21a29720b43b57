"""Turn a dataset's image value into an image file on disk and return its path.

Records carry image *paths*, never bytes (DESIGN.md). Every adapter hands whatever its source
holds - a parquet ``struct{bytes, path}``, a PIL image, raw bytes, a base64 string (VLMEvalKit
TSV), a file path (G-LLaVA) - to :func:`save_image`, which

- names the file by the SHA-1 of its bytes, so an image shared by many questions (DocVQA pages,
  TextVQA photos, ChartQA charts) is written once and the output is deterministic;
- keeps PNG and JPEG bytes as they are (no re-encoding loss), converts other formats to PNG;
- decodes the image fully once, so a truncated or corrupt image fails on its own row;
- applies the ``prepare.images`` limits (:class:`vlmcot.images.ImagePolicy`) to whatever it reads: a
  file path must resolve (symlinks followed) inside the repo, the source's folder (``base_dir``) or
  ``images.roots`` unless ``allow_outside``; a file, zip member or bytes value over ``max_bytes`` is
  refused before it is read; pixels over ``max_pixels`` are refused from the header, before decoding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from vlmcot.images import ImagePolicy, ImageRejected, inspect_image, read_image

# Formats written as-is; MPO is the multi-picture JPEG some cameras write (JPEG-compatible bytes).
_KEEP = {"PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg"}
# Modes PNG stores without conversion.
_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"}


class ImageError(ValueError):
    """The row's image is missing, unreadable or corrupt (the row is skipped, not the load)."""


# the limits when a caller passes none (the prepare stage passes its ``images`` section)
DEFAULT_POLICY = ImagePolicy()


def check_size(n: int, what: str, policy: ImagePolicy | None = None) -> None:
    """Refuse ``n`` bytes (a bytes value, a zip member's declared size) over ``images.max_bytes``."""
    policy = policy or DEFAULT_POLICY
    if n > policy.max_bytes:
        raise ImageError(f"image {what} is {n} bytes, over images.max_bytes={policy.max_bytes} (not read)")


def image_bytes(value: Any, base_dir: str | Path | None = None, policy: ImagePolicy | None = None) -> bytes:
    """The encoded bytes behind any image value a source may hold.

    Accepts ``{"bytes": ..., "path": ...}`` (datasets ``Image(decode=False)``), a PIL image,
    ``bytes``, or a ``str`` that is a file path (relative paths resolve against ``base_dir``).
    """
    if value is None:
        raise ImageError("no image")
    if isinstance(value, dict):
        if value.get("bytes"):
            check_size(len(value["bytes"]), "bytes", policy)
            return bytes(value["bytes"])
        if value.get("path"):
            return read_file(value["path"], base_dir, policy)
        raise ImageError("image struct has neither bytes nor path")
    if isinstance(value, (bytes, bytearray, memoryview)):
        if not value:
            raise ImageError("empty image bytes")
        check_size(len(value), "bytes", policy)
        return bytes(value)
    if isinstance(value, Image.Image):
        return encode_png(value)
    if isinstance(value, (str, os.PathLike)):
        return read_file(value, base_dir, policy)
    raise ImageError(f"unsupported image value of type {type(value).__name__}")


def decode_base64(text: str) -> bytes:
    """VLMEvalKit stores images as base64 text; a bad string is an ImageError, not a crash."""
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as e:
        raise ImageError(f"image is not valid base64 ({e})") from None


def read_file(path: str | os.PathLike, base_dir: str | Path | None, policy: ImagePolicy | None = None) -> bytes:
    """The file's bytes under ``policy``: confined to the repo, ``base_dir`` and ``images.roots``; a regular
    file (never /dev/zero or a FIFO); at most ``max_bytes``, never more read."""
    policy = policy or DEFAULT_POLICY
    try:
        return read_image(str(path), base_dir if base_dir is not None else ".", policy)
    except ImageRejected as e:
        raise ImageError(str(e)) from None


def open_image(data: bytes, policy: ImagePolicy | None = None) -> Image.Image:
    """Decode fully (``load()``): a truncated file fails here rather than in training; pixels over
    ``images.max_pixels`` are refused from the header first."""
    try:
        inspect_image(data, "value", policy or DEFAULT_POLICY, decode=False)
    except ImageRejected as e:
        if e.reason == "image_too_large":
            raise ImageError(str(e)) from None
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"image cannot be decoded ({e})") from None
    if img.width < 1 or img.height < 1:
        raise ImageError("image has zero size")
    return img


def encode_png(img: Image.Image) -> bytes:
    if img.mode not in _PNG_MODES:
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_image(value: Any, image_dir: str | Path, base_dir: str | Path | None = None,
               policy: ImagePolicy | None = None) -> str:
    """Write the image into ``image_dir`` (created) and return the file's path as a string.

    The path is ``image_dir/<sha1 of the bytes>.<png|jpg>``, joined as given: a relative
    ``image_dir`` gives paths relative to the working directory (the repo root in a stage).
    """
    return save_bytes(image_bytes(value, base_dir, policy), image_dir, policy)


def save_bytes(data: bytes, image_dir: str | Path, policy: ImagePolicy | None = None) -> str:
    check_size(len(data), "bytes", policy)
    image_dir = Path(image_dir)
    digest = hashlib.sha1(data).hexdigest()[:20]
    for ext in (".png", ".jpg"):
        # Written (hence decoded and checked) before: by an earlier row or an earlier run.
        if (image_dir / (digest + ext)).exists():
            return str(image_dir / (digest + ext))
    img = open_image(data, policy)
    ext = _KEEP.get(img.format or "")
    if ext is None:
        data, ext = encode_png(img), ".png"
        digest = hashlib.sha1(data).hexdigest()[:20]
    path = image_dir / (digest + ext)
    if not path.exists():
        _atomic_write_bytes(path, data)
    return str(path)


def concat_images(values: list[Any], base_dir: str | Path | None = None, gap: int = 8,
                  policy: ImagePolicy | None = None) -> bytes:
    """Several images side by side on white, tops aligned, as one PNG.

    For single-image models on multi-image questions (MMMU), as VLMEvalKit's
    ``concat_images_vlmeval`` does; ``gap`` pixels separate the images.
    """
    imgs = [open_image(image_bytes(v, base_dir, policy), policy).convert("RGB") for v in values]
    if not imgs:
        raise ImageError("no images to concatenate")
    if len(imgs) == 1:
        return encode_png(imgs[0])
    width = sum(i.width for i in imgs) + gap * (len(imgs) - 1)
    canvas = Image.new("RGB", (width, max(i.height for i in imgs)), (255, 255, 255))
    x = 0
    for i in imgs:
        canvas.paste(i, (x, 0))
        x += i.width + gap
    return encode_png(canvas)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
