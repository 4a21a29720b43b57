"""DVC stage `grpo`: see vlmcot.pipeline.grpo for what it does.

    python3 stages/grpo.py [--params params.yaml]      # same as: vlmcot grpo
"""

import sys

import _project_python

_project_python.ensure()

from vlmcot.cli import cli_entry  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli_entry("grpo"))
