"""``python -m apptopology.cli``: the CLI (the integration harness runs the operator this way)."""

import sys

from .app import main

sys.exit(main())
