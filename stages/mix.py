"""DVC stage `mix`: see vlmcot.pipeline.mix for what it does.

    python stages/mix.py [--params params.yaml]      # same as: vlmcot mix
"""

import sys

from vlmcot.stage import cli_entry

if __name__ == "__main__":
    sys.exit(cli_entry("mix"))
