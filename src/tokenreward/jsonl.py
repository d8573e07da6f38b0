"""JSON Lines files: read all records (`tokenreward.io.read_jsonl`); write all records atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenreward.io import atomic_write, read_jsonl

__all__ = ["read_jsonl", "write_jsonl"]


def write_jsonl(path: Path | str, records: list[dict[str, Any]]) -> None:
    """Write all records atomically (temporary file, then rename)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
