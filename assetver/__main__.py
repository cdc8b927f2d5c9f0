"""``python -m assetver``: the same as the ``assetver`` command."""

import sys

from .cli import main

sys.exit(main())
