"""DVC stage `filter`: see vlmcot.pipeline.filter for what it does.

    python stages/filter.py [--params params.yaml]      # same as: vlmcot filter
"""

import sys

from vlmcot.stage import cli_entry

if __name__ == "__main__":
    sys.exit(cli_entry("filter"))
