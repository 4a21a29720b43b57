"""DVC stage `evaluate`: see vlmcot.pipeline.evaluate for what it does.

    python stages/evaluate.py [--params params.yaml] --model both      # same as: vlmcot evaluate
"""

import sys

from vlmcot.stage import cli_entry

if __name__ == "__main__":
    sys.exit(cli_entry("evaluate"))
