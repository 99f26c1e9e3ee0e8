"""``python -m vitlens``: the ``vitlens`` command."""

import sys

from vitlens.cli import main

sys.exit(main())
