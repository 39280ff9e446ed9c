"""`python -m hrcam` runs the command line."""

import sys

from hrcam.cli import main

sys.exit(main())
