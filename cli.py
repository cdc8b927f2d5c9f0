"""Runs assetver's command line from a checkout: ``python cli.py ...`` == ``assetver ...``."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from assetver.cli import main

if __name__ == "__main__":
    sys.exit(main())
