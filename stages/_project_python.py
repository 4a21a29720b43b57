"""Run this stage under the project's interpreter, however `dvc` was invoked.

DVC runs each stage's cmd (``python3 stages/<name>.py``) through a shell with the caller's PATH, so
``.venv/bin/dvc exp run`` would otherwise start whatever ``python3`` is first on PATH, one without the
project installed (``ModuleNotFoundError: No module named 'vlmcot'``). When the repository has a
``.venv`` (what ``make setup`` creates) and this process is not running in it, re-exec the stage there.
``$DVC_ROOT/.venv`` comes first: queued experiments (``dvc queue start``) run in a copy of the
repository under ``.dvc/tmp/exps`` that has no ``.venv`` of its own, and DVC points DVC_ROOT back at the
original repository. Without a ``.venv`` the current interpreter must have the package installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def ensure() -> None:
    here = Path(__file__).resolve().parent.parent
    roots = [Path(os.environ["DVC_ROOT"])] if os.environ.get("DVC_ROOT") else []
    for root in [*roots, here]:
        python = root / ".venv" / "bin" / "python"
        if python.exists():
            if Path(sys.prefix).resolve() != python.parent.parent.resolve():
                os.execv(str(python), [str(python), *sys.argv])
            break
    try:
        import vlmcot.cli  # noqa: F401  (the package and its command-line dependencies)
    except ModuleNotFoundError as e:
        sys.exit(
            f"error: {e} under {sys.executable}: run `make setup` (creates .venv, which the stages then use) "
            "or install the project into this interpreter (`pip install -e .`)"
        )
