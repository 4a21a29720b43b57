"""DVC stage `dpo`: see vlmcot.pipeline.dpo for what it does.

    python3 stages/dpo.py [--params params.yaml]      # same as: vlmcot dpo
"""

import sys

import _project_python

_project_python.ensure()

from vlmcot.cli import cli_entry  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli_entry("dpo"))
