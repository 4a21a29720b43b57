"""DVC stage `prepare`: see vlmcot.pipeline.prepare for what it does.

    python3 stages/prepare.py [--params params.yaml]      # same as: vlmcot prepare
"""

import sys

import _project_python

_project_python.ensure()

from vlmcot.cli import cli_entry  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli_entry("prepare"))
