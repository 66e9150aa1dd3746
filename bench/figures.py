"""A measured figure beside its budget."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Figure:
    name: str
    value: float | None  # None: not measured on this machine, `note` says why
    unit: str
    budget: str = ""  # human-readable, e.g. "<= 10 ms"
    ok: bool | None = None  # None: informational, or not measured
    note: str = ""

    @classmethod
    def not_measured(cls, name: str, budget: str, reason: str) -> Figure:
        return cls(name, None, "", budget, None, f"not measured: {reason}")

    def shown(self) -> str:
        """The value with its unit, or why there is none."""
        return self.note if self.value is None else f"{self.value:.4g} {self.unit}".rstrip()

    def as_json(self) -> dict:
        return asdict(self)
