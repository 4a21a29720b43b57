"""Reading a record's image safely: confined paths, bounded size, decode-bomb safe, fully decoded.

Every stage that opens an image named by a record (``prepare`` and ``filter`` check them, ``distill``
uploads them to the teacher) goes through :func:`check_image` / :func:`read_image`, with the
stage's ``images`` params section (:class:`ImagePolicy`). In order, without reading more than needed:

1. confinement: the path, symlinks followed, must resolve inside the repo (the working directory of
   a stage), the stage's image root, the folder its records come from, or a folder in ``roots``;
   ``allow_outside: true`` lifts this;
2. a regular file (never ``/dev/zero``, a FIFO or a directory: refused from ``stat``, not read);
3. at most ``max_bytes`` on disk (and never more than that read, should the file grow);
4. at most ``max_pixels`` by the header, checked before any pixel is decoded (a 1 KB PNG can
   declare 100k x 100k pixels); PIL's own ``MAX_IMAGE_PIXELS`` bomb check stays on as well;
5. with ``decode=True`` the whole image is decoded, so a truncated file is named here, not halfway
   through SFT (``OSError: image file is truncated``).
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from vlmcot.config import StrictModel


class ImagePolicy(StrictModel):
    """The ``images`` params section of prepare, filter and distill."""

    # largest image file accepted, in bytes (OpenAI refuses images over 20 MB)
    max_bytes: int = Field(20_000_000, ge=1)
    # largest image accepted, width x height from the header, checked before decoding
    max_pixels: int = Field(40_000_000, ge=1)
    # folders outside the repo that images may live in (absolute, or relative to the repo)
    roots: list[str] = []
    # true: accept image paths anywhere (absolute, or climbing out with ..)
    allow_outside: bool = False


class ImageRejected(ValueError):
    """One record's image cannot be used; ``reason`` is a short tag counted in the stage metrics."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class ImageInfo:
    path: Path
    width: int
    height: int
    format: str | None


def _inside(path: Path, base: Path) -> bool:
    return path == base or base in path.parents


def resolve_image(image: str, root: str | Path = ".", policy: ImagePolicy | None = None) -> Path:
    """The file a record's ``image`` names (relative paths against ``root``), checked for 1-3."""
    policy = policy or ImagePolicy()
    p = Path(image)
    full = p if p.is_absolute() else Path(root) / p
    if not policy.allow_outside:
        real = full.resolve()
        bases = [Path.cwd().resolve(), Path(root).resolve(), *(Path(r).resolve() for r in policy.roots)]
        if not any(_inside(real, b) for b in bases):
            raise ImageRejected(
                "image_outside",
                f"image path {image} resolves to {real}, outside the repo, the records' folder and images.roots; "
                "add its folder to "
                "images.roots or set images.allow_outside: true",
            )
    try:
        st = os.stat(full)
    except FileNotFoundError:
        raise ImageRejected("image_missing", f"image file not found: {image}") from None
    except OSError as e:
        raise ImageRejected("image_unreadable", f"{image}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a device, FIFO or socket"
        raise ImageRejected("image_not_file", f"image {image} is {kind}, not a regular file (not read)")
    if st.st_size > policy.max_bytes:
        raise ImageRejected(
            "image_too_large", f"image {image} is {st.st_size} bytes, over images.max_bytes={policy.max_bytes}"
        )
    return full


def read_image(image: str, root: str | Path = ".", policy: ImagePolicy | None = None) -> bytes:
    """The bytes of a checked image file (1-3), never more than ``max_bytes`` read."""
    policy = policy or ImagePolicy()
    full = resolve_image(image, root, policy)
    try:
        with open(full, "rb") as f:
            # one byte past the smaller of the size and the limit: growth past the limit is seen, and
            # no max_bytes-sized buffer is allocated for a small file
            size = os.fstat(f.fileno()).st_size
            data = f.read(min(policy.max_bytes, size) + 1)
            if size < len(data) <= policy.max_bytes:  # it grew since: read on, up to the limit
                data += f.read(policy.max_bytes + 1 - len(data))
    except OSError as e:
        raise ImageRejected("image_unreadable", f"{image}: {e.strerror or e}") from None
    if len(data) > policy.max_bytes:
        raise ImageRejected("image_too_large", f"image {image} grew past images.max_bytes={policy.max_bytes}")
    return data


def inspect_image(data: bytes, image: str, policy: ImagePolicy | None = None, decode: bool = False) -> ImageInfo:
    """Size from the header (4), then optionally a full decode (5)."""
    from PIL import Image, UnidentifiedImageError

    policy = policy or ImagePolicy()
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            fmt = im.format
            if w * h > policy.max_pixels:
                raise ImageRejected(
                    "image_too_large",
                    f"image {image} is {w}x{h} = {w * h} pixels, over images.max_pixels={policy.max_pixels}",
                )
            if decode:
                im.load()
    except ImageRejected:
        raise
    except Image.DecompressionBombError as e:  # PIL's own check, from the header, before decoding
        raise ImageRejected("image_too_large", f"image {image}: {e} (images.max_pixels={policy.max_pixels})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageRejected("image_unreadable", f"image {image} does not decode ({type(e).__name__}: {e})") from None
    if w < 1 or h < 1:
        raise ImageRejected("image_unreadable", f"image {image} has zero size")
    return ImageInfo(path=Path(image), width=w, height=h, format=fmt)


def check_image(image: str, root: str | Path = ".", policy: ImagePolicy | None = None, decode: bool = True) -> ImageInfo:
    """All of 1-5 for one record's image; ImageRejected naming the file and the params key otherwise."""
    data = read_image(image, root, policy)
    return inspect_image(data, image, policy, decode=decode)
