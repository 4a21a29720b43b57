"""DVC stage `rerank`: see vlmcot.pipeline.rerank for what it does.

    python stages/rerank.py [--params params.yaml]      # same as: vlmcot rerank
"""

import sys

from vlmcot.stage import cli_entry

if __name__ == "__main__":
    sys.exit(cli_entry("rerank"))
