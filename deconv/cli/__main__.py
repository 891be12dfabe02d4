"""``python -m deconv.cli``."""

import sys

from deconv.cli import main

sys.exit(main())
