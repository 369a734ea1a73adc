"""``python -m forgelab ...``: the ``forgelab`` command."""

import sys

from forgelab.core.cli import main

if __name__ == "__main__":
    sys.exit(main())
