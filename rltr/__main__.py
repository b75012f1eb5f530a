"""``python -m rltr ...`` (and ``accelerate launch -m rltr ...``): the ``rltr`` command line."""

import sys

from rltr.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
