"""``python -m patchlesion.cli``: the same as the ``patchlesion`` command."""

import sys

from patchlesion.cli import main

sys.exit(main())
