"""``python -m cli``: the ``wellpulse`` command."""

import sys

from cli import main

sys.exit(main())
