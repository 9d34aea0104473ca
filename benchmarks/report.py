"""What benchmark scripts share: writing a result as JSON and Markdown side by side."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(out: str | Path, results: dict, markdown: str) -> None:
    """``OUT.json`` (every figure) and ``OUT.md`` (the tables), then the tables on stdout."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(markdown)
    print(markdown)


def checkpoint_specs(specs: list[str]) -> list[tuple[str, str]]:
    """``LABEL=CHECKPOINT`` arguments as (label, path) pairs; SystemExit naming the form for one that
    has no ``=`` or whose path is not a checkpoint folder (no manifest.json)."""
    pairs = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or not (Path(path) / "manifest.json").is_file():
            raise SystemExit(f"{spec!r}: pass LABEL=CHECKPOINT, a folder with manifest.json")
        pairs.append((label, path))
    return pairs
