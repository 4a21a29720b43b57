"""DVC stage `dpo`: see vlmcot.pipeline.dpo for what it does.

    python stages/dpo.py [--params params.yaml]      # same as: vlmcot dpo
"""

import sys

from vlmcot.stage import cli_entry

if __name__ == "__main__":
    sys.exit(cli_entry("dpo"))
