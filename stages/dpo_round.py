"""DVC stage `dpo_round`: see vlmcot.pipeline.dpo_round for what it does.

    python3 stages/dpo_round.py --item r2 [--params params.yaml]   # same as: vlmcot dpo_round --item r2
"""

import sys

import _project_python

_project_python.ensure()

from vlmcot.cli import cli_entry  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli_entry("dpo_round"))
