"""DVC stage `control`: see vlmcot.pipeline.control for what it does.

    python3 stages/control.py [--params params.yaml] --item cont_sft|rft      # same as: vlmcot control
"""

import sys

import _project_python

_project_python.ensure()

from vlmcot.cli import cli_entry  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli_entry("control"))
