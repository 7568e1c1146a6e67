"""``python -m search.cli ...``: the same as the ``optforge`` command."""
import sys

from .main import main

sys.exit(main())
