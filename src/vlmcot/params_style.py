"""params.yaml in the layout `dvc exp run -S` writes back, every comment kept.

`dvc exp run -S key=value` rewrites the whole params file through ruamel (dvc.utils.hydra.apply_overrides):
flow lists and maps become block style, `null` becomes an empty value, lines wrap at 80 columns, and
comments attached to a node it replaces are dropped. A file already in that layout comes back
byte-identical except for the key that was set, so an experiment's params diff is that key alone.
:func:`restyle` puts a text into that layout without losing comments (it switches every node to block
style in place instead of replacing it). One comment cannot stay where it was: ruamel stores comment lines
that follow a list with the list's last item, and DVC replaces lists (so `-S` would delete them). Those
lines, the comment of the key after a list, become that key's end-of-line comment. Comments *between* a
list's items cannot be kept anywhere by DVC; :func:`comments` lets a caller check nothing was lost.

Used by `vlmcot profile` (an overlaid params.yaml stays in this layout) and tools/dvc_style_params.py.
"""

from __future__ import annotations

import io
import re
import tempfile
from collections import Counter
from pathlib import Path


def dvc_rewrite(text: str) -> str:
    """What DVC's -S writer makes of ``text`` when it sets nothing (apply_overrides with no override)."""
    from dvc.utils.hydra import apply_overrides

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "params.yaml"
        p.write_text(text, encoding="utf-8")
        apply_overrides(p, [])
        return p.read_text(encoding="utf-8")


def _text(token) -> str:
    return " ".join(line.strip().lstrip("#").strip() for line in token.value.splitlines() if line.strip())


def _pop_trailing(seq):
    """Remove and return the comment token stored after a list's last item: on the list itself, or, for
    a list of mappings or lists, on its last item's last entry (all of it is inside the list, which DVC
    rewrites whole). None when there is none."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if not len(seq):
        return None
    last = len(seq) - 1
    slot = seq.ca.items.get(last)
    if slot and slot[0] is not None:
        seq.ca.items.pop(last)
        return slot[0]
    item = seq[last]
    if isinstance(item, CommentedSeq):
        return _pop_trailing(item)
    if isinstance(item, CommentedMap) and len(item):
        key = list(item.keys())[-1]
        if isinstance(item[key], CommentedSeq):
            return _pop_trailing(item[key])
        slot = item.ca.items.get(key)
        if slot and len(slot) > 2 and slot[2] is not None:
            token, slot[2] = slot[2], None
            return token
    return None


def _block(node) -> str | None:
    """Block style everywhere; move comments stored after a list's last item to the next key's end of
    line. Returns a comment still waiting for a key (the list was the last entry of this mapping)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    pending = None
    if isinstance(node, CommentedSeq):
        node.fa.set_block_style()
        for child in node:
            _block(child)
        token = _pop_trailing(node)
        # a comment moves on to the next key; blank lines stored there go (DVC drops them with the list)
        if token is not None and "#" in token.value:
            pending = _text(token)
        return pending
    if isinstance(node, CommentedMap):
        node.fa.set_block_style()
        for key in list(node.keys()):
            if pending:
                slot = node.ca.items.get(key)
                if slot and len(slot) > 2 and slot[2] is not None and slot[2].value.startswith("\n"):
                    # comment lines after this key's value live in the same slot: keep them after ours
                    slot[2].value = f" # {pending}" + slot[2].value
                else:
                    node.yaml_add_eol_comment(pending, key)
                pending = None
            pending = _block(node[key])
    return pending


def restyle(text: str) -> str:
    from dvc.utils.serialize._yaml import _get_yaml, parse_yaml_for_update

    # a flow list keeps a following comment on the mapping; once dumped in block style the same comment
    # sits on the list's last item: repeat until the text settles (two or three passes)
    for _ in range(5):
        data = parse_yaml_for_update(text, "<params>")
        _block(data)
        out = io.StringIO()
        _get_yaml().dump(data, out)
        if out.getvalue() == text:
            break
        text = out.getvalue()
    return text


def comments(text: str) -> Counter:
    """The words of every comment, whole-line or end-of-line (moving a comment keeps its words)."""
    words: Counter = Counter()
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            words.update(stripped.lstrip("#").split())
        elif re.search(r"\s#\s", line):
            words.update(re.split(r"\s#\s", line, maxsplit=1)[1].split())
    return words
