"""DVC stage `base`: see vlmcot.pipeline.base for what it does.

    python stages/base.py [--params params.yaml]      # same as: vlmcot base
"""

import sys

from vlmcot.stage import cli_entry

if __name__ == "__main__":
    sys.exit(cli_entry("base"))
