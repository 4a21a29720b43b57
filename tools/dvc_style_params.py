"""Rewrite YAML params files in the style `dvc exp run -S` writes them back, keeping every comment.

`dvc exp run -S key=value` rewrites the whole params file through ruamel (dvc.utils.hydra.apply_overrides):
flow lists and maps become block style, `null` becomes an empty value, lines wrap at 80 columns, and
comments attached to a node it replaces are dropped. A file already in that style comes back
byte-identical except for the key that was set, so an experiment's params diff is that key alone.

This script puts a file into that style without losing comments (it switches every node to block
style in place instead of replacing it), then checks the result is a fixed point of DVC's own writer.
One comment cannot stay where it was: ruamel stores comment lines that follow a list with the list's
last item, and DVC replaces lists (so `-S` would delete them). Those lines, the comment of the key
after a list, become that key's end-of-line comment.
Rerun it after editing params.yaml or configs/*.yaml (tests/test_params_style.py checks both):

    .venv/bin/python tools/dvc_style_params.py params.yaml configs/paper.yaml
    .venv/bin/python tools/dvc_style_params.py --check params.yaml     # exit 1 if a file would change
"""

from __future__ import annotations

import argparse
import io
import re
import sys
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


def _block(node) -> str | None:
    """Block style everywhere; move comments stored after a list's last item to the next key's end of
    line. Returns a comment still waiting for a key (the list was the last entry of this mapping)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    pending = None
    if isinstance(node, CommentedSeq):
        node.fa.set_block_style()
        for child in node:
            _block(child)
        last = len(node) - 1
        slot = node.ca.items.get(last)
        if slot and slot[0] is not None and "#" in slot[0].value:
            pending = _text(slot[0])
            node.ca.items.pop(last)
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--check", action="store_true", help="only report files not in DVC's style")
    args = ap.parse_args(argv)
    bad = 0
    for f in args.files:
        text = Path(f).read_text(encoding="utf-8")
        new = restyle(text)
        if dvc_rewrite(new) != new:
            print(f"error: {f}: not a fixed point of DVC's writer after restyling", file=sys.stderr)
            return 2
        lost = list((comments(text) - comments(new)) | (comments(new) - comments(dvc_rewrite(new))))
        if lost:
            print(f"error: {f}: restyling would drop comments: {lost[:3]}", file=sys.stderr)
            return 2
        if new == text:
            print(f"{f}: already in DVC's style")
        elif args.check:
            print(f"{f}: not in DVC's style (run tools/dvc_style_params.py {f})")
            bad += 1
        else:
            Path(f).write_text(new, encoding="utf-8")
            print(f"{f}: rewritten in DVC's style ({len(text.splitlines())} -> {len(new.splitlines())} lines)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
