"""DVC stage `distill`: see vlmcot.pipeline.distill for what it does.

python stages/distill.py [--params params.yaml]      # same as: vlmcot distill
"""

import sys

import _project_python

_project_python.ensure()

from vlmcot.cli import cli_entry  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli_entry("distill"))
