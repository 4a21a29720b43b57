"""Rewrite YAML params files in the layout `dvc exp run -S` writes them back, keeping every comment
(vlmcot.params_style says what that layout is and why), then check the result is a fixed point of DVC's
own writer and that no comment was lost. Rerun it after editing params.yaml (tests/test_params_style.py
checks it; configs/*.yaml are overlays that `vlmcot profile` merges and restyles, never read by DVC):

    .venv/bin/python tools/dvc_style_params.py params.yaml
    .venv/bin/python tools/dvc_style_params.py --check params.yaml     # exit 1 if a file would change
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlmcot.params_style import comments, dvc_rewrite, restyle


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
