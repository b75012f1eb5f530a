"""argparse pieces shared by the subcommands: a parser whose errors are one line, and value types
whose errors name the bad value."""

from __future__ import annotations

import argparse


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line naming the (sub)command, exit code 2:
    ``rltr evaluate: error: argument --budgets: budget 2 is outside (0, 1]``. Subparsers inherit the class."""

    def add_subparsers(self, **kwargs):
        self._has_subcommands = True
        return super().add_subparsers(**kwargs)

    def parse_known_args(self, args=None, namespace=None):
        namespace, extra = super().parse_known_args(args, namespace)
        if extra and not getattr(self, "_has_subcommands", False):
            # A leaf (sub)command saw every argument after its name: report the leftovers here, naming
            # it, rather than letting the top-level parser report them under plain "rltr".
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        return namespace, extra

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def csv_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    if not all(items):
        raise argparse.ArgumentTypeError(f"empty item in the comma-separated list {text!r}")
    return items


def budgets(text: str) -> list[float | None]:
    out: list[float | None] = []
    for item in csv_list(text):
        if item.lower() == "none":
            out.append(None)  # the method's own choice (a router's argmax, the oracle's relevant set)
            continue
        try:
            value = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"budget {item!r} is not a number") from None
        if not 0 < value <= 1:
            raise argparse.ArgumentTypeError(f"budget {item} is outside (0, 1]")
        out.append(value)
    return out


def layers(text: str) -> list[int]:
    try:
        return sorted({int(t) for t in csv_list(text)})
    except ValueError:
        raise argparse.ArgumentTypeError(f"decision layers must be integers, got {text!r}") from None


def budget(text: str) -> float:
    """One budget in (0, 1]."""
    (value,) = budgets(text)
    if value is None:
        raise argparse.ArgumentTypeError("a single numeric budget in (0, 1] is needed here")
    return value


def mapping(text: str) -> dict:
    """A YAML mapping (``'{n_pairs: [1, 6]}'``)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"expected a YAML mapping, got {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a YAML mapping like '{{key: value}}', got {text!r}")
    return value
