"""DVC stage `sample`: see vlmcot.pipeline.sample for what it does.

    python3 stages/sample.py [--params params.yaml] --item train|eval      # same as: vlmcot sample
"""

import sys

import _project_python

_project_python.ensure()

from vlmcot.cli import cli_entry  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli_entry("sample"))
