"""`python -m acula.cli ...` (and `accelerate launch -m acula.cli ...`) = `acula ...`."""

import sys

from . import main

if __name__ == "__main__":  # probe worker processes (spawn) import this module too
    sys.exit(main())
