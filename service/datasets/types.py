"""The shapes of a time-stamped rating log: what every data set loader returns.

`Dataset.ordered` is the one way loaders build one, so every loader keeps the same
promises (time order, a catalog entry for every rated item).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Interaction:
    """One time-stamped user-item event. `seq` breaks timestamp ties deterministically
    (the row's position in the source file), so every replay sees the same order."""

    user: str
    item: str
    ts: int  # unix seconds
    rating: float | None = None
    seq: int = 0


@dataclass(frozen=True)
class ItemInfo:
    item_id: str
    title: str
    genres: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    description: str = ""

    @property
    def text(self) -> str:
        """What content models and our embedder read about the item."""
        parts = [self.title]
        if self.genres:
            parts.append("Genres: " + ", ".join(self.genres))
        if self.tags:
            parts.append("Tags: " + ", ".join(self.tags))
        if self.description:
            parts.append(self.description)
        return ". ".join(parts)


@dataclass
class Dataset:
    name: str
    interactions: list[Interaction]  # sorted by (ts, seq)
    items: dict[str, ItemInfo]

    @classmethod
    def ordered(cls, name: str, interactions: Iterable[Interaction],
                items: dict[str, ItemInfo]) -> Dataset:
        """Interactions sorted by `(ts, seq)`; an event about an item the catalog file
        forgot gets a placeholder `ItemInfo` titled with its id (full-catalog ranking
        needs one) rather than being dropped. `items` is completed in place."""
        ordered = sorted(interactions, key=lambda i: (i.ts, i.seq))
        for interaction in ordered:
            if interaction.item not in items:
                items[interaction.item] = ItemInfo(item_id=interaction.item,
                                                   title=interaction.item)
        return cls(name=name, interactions=ordered, items=items)


class DatasetFormatError(ValueError):
    """A source file does not follow its format; the message names the file and line."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path = path
        self.line = line
