"""A measured figure beside its budget."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    budget: str  # human-readable, e.g. "<= 10 ms"
    ok: bool | None  # None: informational, no budget

    def as_json(self) -> dict:
        return asdict(self)
