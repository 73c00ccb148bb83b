"""``python -m st_unirep.search``: see :mod:`st_unirep.search.cli`."""

from __future__ import annotations

import sys

from st_unirep.search.cli import main

if __name__ == "__main__":
    sys.exit(main())
