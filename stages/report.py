"""DVC stage `report`: see vlmcot.pipeline.report for what it does.

    python stages/report.py [--params params.yaml]      # same as: vlmcot report
"""

import sys

from vlmcot.stage import cli_entry

if __name__ == "__main__":
    sys.exit(cli_entry("report"))
