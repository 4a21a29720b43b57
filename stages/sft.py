"""DVC stage `sft`: see vlmcot.pipeline.sft for what it does.

    python3 stages/sft.py [--params params.yaml] --mix both [--dry-run]      # same as: vlmcot sft
"""

import sys

import _project_python

_project_python.ensure()

from vlmcot.cli import cli_entry  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli_entry("sft"))
