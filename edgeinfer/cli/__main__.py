"""``python -m edgeinfer.cli``."""

import sys

from edgeinfer.cli import main

sys.exit(main())
