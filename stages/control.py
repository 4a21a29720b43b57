"""DVC stage `control`: see vlmcot.pipeline.control for what it does.

    python stages/control.py [--params params.yaml] --item cont_sft|rft      # same as: vlmcot control
"""

import sys

from vlmcot.stage import cli_entry

if __name__ == "__main__":
    sys.exit(cli_entry("control"))
