"""Thin entry point: ``python evaluate.py ...`` is ``rltr evaluate ...``."""

import sys

from rltr.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
