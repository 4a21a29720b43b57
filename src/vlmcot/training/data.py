"""Turning LLaVA conversation records into the rows TRL's vision SFT collator reads.

LLaVA rows carry ``<image>`` inside the first human turn; TRL wants ``{"images": [...], "messages":
[...]}`` with plain-text turns, and puts one image placeholder before the first user message itself.
A bad row (no turns, roles out of order, image missing on disk or not decoding) is skipped and
reported by id, before training starts.

Every distinct image is fully decoded once here (:func:`image_problem`): the last line of defence
behind ``prepare``/``filter``/``mix``, which check them under their ``images`` limits. Skipping with
a count here, rather than failing in the collator, is deliberate: the collator sees a batch already
drawn by the (resumable, length-grouped) sampler, where dropping a row would change the batch and
break exact resume; here a bad row is named and counted against the stage's ``max_bad_rate``.
Confinement is not re-checked (the mix that names the file was checked under ``mix.images``).
A file damaged while training runs still fails in the collator: :class:`NamedImageErrors` turns that
into one :class:`TrainingImageError` naming the record and the file, not a bare ``OSError``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from vlmcot.images import ImagePolicy, ImageRejected, check_image
from vlmcot.models.tokenizer import IMAGE_TOKEN

ROLES = {"human": "user", "gpt": "assistant"}


def llava_to_messages(conversations: list[dict]) -> list[dict]:
    """``[{"from": "human", "value": "<image>\\nQ"}, {"from": "gpt", ...}]`` -> chat messages without <image>."""
    messages = []
    for i, turn in enumerate(conversations):
        role = ROLES.get(turn.get("from"))
        if role is None:
            raise ValueError(f"turn {i}: unknown speaker {turn.get('from')!r} (expected 'human' or 'gpt')")
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise ValueError(f"turn {i}: expected a {expected} turn, got {role}")
        text = str(turn.get("value", ""))
        if role == "user":
            text = text.replace(IMAGE_TOKEN + "\n", "").replace(IMAGE_TOKEN, "").strip()
        if not text.strip():
            raise ValueError(f"turn {i}: empty {role} text")
        messages.append({"role": role, "content": text})
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("conversation must end with an assistant (gpt) turn")
    return messages


# the last check is about decoding only: location and size were checked (and may have been set higher,
# paper: 50 MB / 89M pixels) in prepare, filter and mix under their `images` params; PIL's own
# decode-bomb check stays on
_TRAINING_IMAGES = ImagePolicy(allow_outside=True, max_bytes=10**12, max_pixels=10**12)


def image_problem(path: Path, seen: dict[Path, str | None]) -> str | None:
    """Why the image at ``path`` cannot be trained on (full decode), or None; each file checked once."""
    if path not in seen:
        try:
            check_image(str(path), ".", _TRAINING_IMAGES, decode=True)
            seen[path] = None
        except ImageRejected as e:
            seen[path] = str(e)
    return seen[path]


def trainable_image(image: str, root: Path, seen: dict[Path, str | None]) -> Path:
    """The path of a row's image (relative to ``root`` unless absolute); ValueError naming why it cannot
    be trained on (missing, or :func:`image_problem`)."""
    p = Path(image)
    p = p if p.is_absolute() else root / p
    if not p.is_file():
        raise ValueError(f"image file not found: {image}")
    problem = image_problem(p, seen)
    if problem:
        raise ValueError(problem)
    return p


def sft_rows(records: Iterable[dict], root: str | Path = ".") -> tuple[list[dict], list[str]]:
    """(rows for TRL, one error message per skipped record naming its id)."""
    root = Path(root)
    rows, errors = [], []
    seen: dict[Path, str | None] = {}
    for n, rec in enumerate(records):
        rid = rec.get("id", f"<row {n}>")
        try:
            messages = llava_to_messages(rec.get("conversations") or [])
            image = rec.get("image")
            if not image:
                raise ValueError("no image (the tiny pipeline trains image-grounded rows only)")
            p = trainable_image(image, root, seen)
        except ValueError as e:
            errors.append(f"record {rid}: {e}")
            continue
        # characters as a cheap length proxy, for the length-grouped sampler
        length = sum(len(m["content"]) for m in messages)
        rows.append({"id": rid, "images": [str(p)], "messages": messages, "length": length})
    return rows, errors


class TrainingImageError(RuntimeError):
    """An image that passed the check before training no longer decodes (changed on disk since)."""


class NamedImageErrors:
    """Wraps the vision collator and decodes the batch's images itself, so a failure names the record
    and the file (one :class:`TrainingImageError`, not a bare ``OSError`` from a worker).

    Used with ``to_dataset(rows, decode=False)``: rows then carry ``{"path", "bytes"}`` for each image
    (the datasets ``Image`` feature would decode them in ``__getitem__``, outside any record's name)
    and their ``id`` (kept as a signature column, like ``length``)."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):  # the Trainer and TRL read the collator's settings
        return getattr(self.inner, name)

    def __call__(self, examples: list[dict]):
        return self.inner([{**ex, "images": [_decode(img, ex) for img in ex.get("images") or []]}
                           for ex in examples])


def _decode(img, ex: dict):
    import io

    from PIL import Image

    if not isinstance(img, dict):  # already an image
        return img
    path = img.get("path") or "<bytes>"
    try:
        im = Image.open(io.BytesIO(img["bytes"]) if img.get("bytes") else img["path"])
        im.load()
        return im
    except (OSError, SyntaxError, ValueError) as e:
        raise TrainingImageError(
            f"record {ex.get('id', '<no id>')}: image {path} does not decode during training "
            f"({type(e).__name__}: {e}); it decoded before training, so the file changed since: restore "
            "it (or rerun mix) and rerun the stage, which resumes from its last checkpoint") from None


def to_dataset(rows: list[dict], decode: bool = True):
    """A ``datasets.Dataset`` whose images decode lazily from their paths (cheap to build);
    ``decode=False`` leaves them as ``{"path", "bytes"}`` for :class:`NamedImageErrors` to decode."""
    from datasets import Dataset, Image, Sequence

    ds = Dataset.from_list(rows)
    return ds.cast_column("images", Sequence(Image(decode=decode)))
