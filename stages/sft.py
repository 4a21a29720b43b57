"""DVC stage `sft`: see vlmcot.pipeline.sft for what it does.

    python stages/sft.py [--params params.yaml] --mix both [--dry-run]      # same as: vlmcot sft
"""

import sys

from vlmcot.stage import cli_entry

if __name__ == "__main__":
    sys.exit(cli_entry("sft"))
