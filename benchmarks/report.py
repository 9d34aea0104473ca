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
