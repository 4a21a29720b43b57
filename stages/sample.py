"""DVC stage `sample`: see vlmcot.pipeline.sample for what it does.

    python stages/sample.py [--params params.yaml] --item train|eval      # same as: vlmcot sample
"""

import sys

from vlmcot.stage import cli_entry

if __name__ == "__main__":
    sys.exit(cli_entry("sample"))
