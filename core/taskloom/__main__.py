"""``python -m taskloom``: the same as the ``taskloom`` command."""

import sys

from .cli import main

sys.exit(main())
