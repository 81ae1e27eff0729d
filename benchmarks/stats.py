"""Figures (median and range over rounds), side-by-side ratios, targets and the table."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

_T = TypeVar("_T")

__all__ = ["Figure", "Ratio", "Target", "Table", "fmt", "rotated"]


def fmt(value: float) -> str:
    """A number with three significant digits, without scientific notation."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def rotated(items: Sequence[_T], shift: int) -> list[_T]:
    """``items`` starting at ``shift`` (modulo), wrapping: round ``shift``'s order."""
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


@dataclass
class Figure:
    """Samples of one measurement (one per round), shown as median and range."""

    name: str
    unit: str
    samples: list[float] = field(default_factory=list)
    note: str = ""

    def add(self, value: float) -> None:
        """Record one round."""
        self.samples.append(float(value))

    @property
    def median(self) -> float | None:
        """Median of the rounds, or None before the first."""
        return statistics.median(self.samples) if self.samples else None

    def shown(self) -> str:
        """``median (min–max)``, or ``n/a``."""
        if not self.samples:
            return "n/a"
        text = f"{fmt(self.median or 0)} {self.unit}"
        if len(self.samples) > 1:
            text += f" ({fmt(min(self.samples))}–{fmt(max(self.samples))})"
        return text


@dataclass
class Ratio:
    """``a / b`` per round, where both were measured in that round (side by side)."""

    name: str
    a: Figure
    b: Figure
    invert: bool = False  # True when smaller a is better (times): show b / a

    @property
    def samples(self) -> list[float]:
        """One ratio per round in which both sides were measured."""
        pairs = zip(self.a.samples, self.b.samples, strict=False)
        out = []
        for a, b in pairs:
            num, den = (b, a) if self.invert else (a, b)
            if den > 0:
                out.append(num / den)
        return out

    @property
    def median(self) -> float | None:
        """Median ratio, or None without a complete round."""
        values = self.samples
        return statistics.median(values) if values else None

    def shown(self) -> str:
        """``median x (min–max)``."""
        values = self.samples
        if not values:
            return "n/a"
        text = f"{statistics.median(values):.2f}x"
        if len(values) > 1:
            text += f" ({min(values):.2f}–{max(values):.2f})"
        return text


@dataclass
class Target:
    """A target of the issue: PASS or MISS from a figure's or ratio's median."""

    name: str
    value: Callable[[], float | None]
    check: Callable[[float], bool]
    goal: str

    def verdict(self) -> str:
        """PASS, MISS, or n/a when the figure was not measured."""
        value = self.value()
        if value is None:
            return "n/a"
        return "PASS" if self.check(value) else "MISS"


@dataclass
class Table:
    """Rows of figures, ratios and targets, printed as a Markdown table."""

    title: str
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def figure(self, figure: Figure) -> None:
        """A measured figure."""
        self.rows.append((figure.name, figure.shown(), figure.note))

    def ratio(self, ratio: Ratio, note: str = "") -> None:
        """A side-by-side comparison."""
        self.rows.append((ratio.name, ratio.shown(), note))

    def target(self, target: Target, shown: str) -> None:
        """A target with its verdict."""
        self.rows.append((f"target: {target.name}", shown, f"{target.verdict()} ({target.goal})"))

    def note(self, name: str, text: str) -> None:
        """A row without a measurement (a skipped peer, a setting)."""
        self.rows.append((name, text, ""))

    def render(self) -> str:
        """The table as Markdown."""
        head = ("what", "median (range)", "notes")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(3)]

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        out = [f"### {self.title}", "", line(head), line(["-" * w for w in widths])]
        out.extend(line(r) for r in self.rows)
        return "\n".join(out)
