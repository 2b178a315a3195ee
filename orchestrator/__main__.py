"""``python -m orchestrator``: the same entry point as the ``csbs-orchestrator`` script."""

import sys

from orchestrator.cli.main import main

sys.exit(main())
