"""DVC stage `evaluate`: see vlmcot.pipeline.evaluate for what it does.

    python3 stages/evaluate.py [--params params.yaml] --model both      # same as: vlmcot evaluate
"""

import sys

import _project_python

_project_python.ensure()

from vlmcot.cli import cli_entry  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli_entry("evaluate"))
