"""DVC stage `table`: see vlmcot.pipeline.table for what it does.

    python stages/table.py [--params params.yaml]      # same as: vlmcot table
"""

import sys

from vlmcot.stage import cli_entry

if __name__ == "__main__":
    sys.exit(cli_entry("table"))
