"""Results files: ``results.json`` (settings + one dict per row) and ``results.csv`` (the rows' scalar fields),
each written under a temporary name and renamed into place."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from rltr.runs.outputs import write_text_atomically


def write_results(rows: list[dict], out: Path, header: dict | None = None) -> dict:
    """Write ``out``/results.json (settings + rows) and results.csv (the rows' scalar fields); return the
    settings (``header`` without the CLI's ``func``, paths as strings)."""
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in (header or {}).items() if k != "func"}
    write_text_atomically(out / "results.json", json.dumps({"settings": settings, "results": rows}, indent=2))
    flat = [_flat(row) for row in rows]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for row in flat for k in row)))
    writer.writeheader()
    writer.writerows(flat)
    write_text_atomically(out / "results.csv", text.getvalue())
    return settings


def _flat(row: dict) -> dict:
    """A CSV row: scalar fields as they are, mappings one column per key (``scores`` -> ``score_<name>``), lists left out."""
    out = {}
    for k, v in row.items():
        if isinstance(v, dict):
            out.update({f"{k.rstrip('s')}_{kk}": vv for kk, vv in v.items()})
        elif not isinstance(v, list):
            out[k] = v
    return out
