"""DVC stage `pairs`: see vlmcot.pipeline.pairs for what it does.

    python stages/pairs.py [--params params.yaml]      # same as: vlmcot pairs
"""

import sys

from vlmcot.stage import cli_entry

if __name__ == "__main__":
    sys.exit(cli_entry("pairs"))
