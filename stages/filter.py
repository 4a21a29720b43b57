"""DVC stage `filter`: see vlmcot.pipeline.filter for what it does.

    python3 stages/filter.py [--params params.yaml]      # same as: vlmcot filter
"""

import sys

import _project_python

_project_python.ensure()

from vlmcot.cli import cli_entry  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli_entry("filter"))
