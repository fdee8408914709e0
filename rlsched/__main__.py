"""``python -m rlsched`` is the ``rlsched`` command."""

import sys

from rlsched.cli import main

sys.exit(main())
