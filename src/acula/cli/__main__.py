"""`python -m acula.cli ...` (and `accelerate launch -m acula.cli ...`) = `acula ...`."""

import sys

from . import main

sys.exit(main())
