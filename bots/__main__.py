"""`python -m bots` does exactly what `uppzy-bot` does."""

import sys

from bots.cli import main

sys.exit(main())
