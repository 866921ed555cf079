"""Hand-made data sets, JSON-lines files and the reading of Markdown report tables."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evals.types import Dataset, Interaction, ItemInfo


def write_jsonl(path: Path, rows: Iterable[dict[str, Any] | str]) -> Path:
    """One line per row; a str row is written verbatim (for malformed lines)."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_dataset(events: Iterable[tuple[str, str, int, float | None]],
                 items: Iterable[str] = ()) -> Dataset:
    """A Dataset from (user, item, ts, rating) tuples; seq is the tuple's position."""
    interactions = [Interaction(user=u, item=i, ts=ts, rating=r, seq=n)
                    for n, (u, i, ts, r) in enumerate(events)]
    catalog = {i.item for i in interactions} | set(items)
    return Dataset(name="handmade",
                   interactions=sorted(interactions, key=lambda e: (e.ts, e.seq)),
                   items={i: ItemInfo(item_id=i, title=f"Item {i}") for i in sorted(catalog)})


def markdown_tables(markdown: str) -> list[tuple[list[str], dict[str, list[str]]]]:
    """Every Markdown table in a text, in order: (columns after "model", {model: cells})."""
    blocks: list[list[str]] = []
    previous = False
    for line in markdown.splitlines():
        row = line.startswith("|")
        if row and not previous:
            blocks.append([])
        if row:
            blocks[-1].append(line)
        previous = row
    out = []
    for rows in blocks:
        header = [c.strip() for c in rows[0].strip("|").split("|")]
        body = {}
        for body_row in rows[2:]:
            cells = [c.strip() for c in body_row.strip("|").split("|")]
            body[cells[0]] = cells[1:]
        out.append((header[1:], body))
    return out


def cell_tolerance(cell: str) -> float:
    """Half a unit in the last printed decimal: how far a cell may be from its number."""
    decimals = len(cell.split(".")[1]) if "." in cell else 0
    return 0.5 * 10.0 ** -decimals + 1e-12
