"""DVC stage `prepare`: see vlmcot.pipeline.prepare for what it does.

    python stages/prepare.py [--params params.yaml]      # same as: vlmcot prepare
"""

import sys

from vlmcot.stage import cli_entry

if __name__ == "__main__":
    sys.exit(cli_entry("prepare"))
