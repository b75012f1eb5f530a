"""Thin entry point: ``python train.py ...`` is ``rltr train ...``."""

import sys

from rltr.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
