"""DVC stage `credit`: see vlmcot.pipeline.credit for what it does.

    python stages/credit.py [--params params.yaml]      # same as: vlmcot credit
"""

import sys

from vlmcot.stage import cli_entry

if __name__ == "__main__":
    sys.exit(cli_entry("credit"))
