"""argparse value types shared by the subcommands: each error names the bad value."""

from __future__ import annotations

import argparse


def csv_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def budgets(text: str) -> list[float | None]:
    out = []
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
