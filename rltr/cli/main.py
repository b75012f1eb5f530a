"""``rltr`` command line: the parser of every subcommand (one module each in this folder) and the error rule.

Every user error (bad model, task, method, budget, input) prints one line naming the value and exits
with code 2, no traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from rltr.cli.apply import add_apply
from rltr.cli.args import Parser
from rltr.cli.data import add_data
from rltr.cli.demo import add_ablate, add_demo
from rltr.cli.evaluate import add_evaluate
from rltr.cli.train import add_export, add_train
from rltr.cli.zoo import add_zoo
from rltr.core import distributed

EXIT_USAGE = 2
# bad input, and file-system refusals that name their path (a read-only --out, a folder under a file)
USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError)


def _one_line(e: Exception) -> str:
    """The error's message; for file-system errors the reason and the path (``Permission denied: 'runs/x'``)."""
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.strerror}: {str(e.filename)!r}"
    return str(e)


# ---- entry point ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rltr", description="RL-guided token reduction for frozen transformers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train(sub)
    add_export(sub)
    add_evaluate(sub)
    add_apply(sub)
    add_zoo(sub)
    add_demo(sub)
    add_ablate(sub)
    add_data(sub)
    return parser


class _StderrHandler(logging.Handler):
    """rltr's log records as ``rltr: message`` / ``rltr: warning: message`` lines on the current sys.stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "rltr: warning: " if record.levelno >= logging.WARNING else "rltr: "
        print(prefix + record.getMessage(), file=sys.stderr)


def _show_logs() -> None:
    """The CLI shows the library's INFO and WARNING records (the library itself only logs)."""
    logger = logging.getLogger("rltr")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    _show_logs()
    parser = build_parser()
    args = parser.parse_args(argv)
    ok = False
    try:
        code = args.func(args)
        ok = True
        return code
    except USER_ERRORS as e:
        print(f"rltr {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        distributed.finish(ok)  # launched as several processes: leave together


if __name__ == "__main__":
    sys.exit(main())
