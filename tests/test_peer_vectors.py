"""Other projects' own test vectors, run through registry_nb's public API.

One case per vector, named by the peer's ``where``. The data is read from
``../shared/data/peer/vectors`` (see ``peer_vectors.py``); small tables the vectors
README only names are written out, cited, in ``peer_cited_vectors.py``.

A vector either agrees, or is in :data:`DEVIATIONS` with the reason and a check of what
registry_nb does instead. A deviation's case asserts both that the peer's expectation
still fails and that our behaviour holds, so a deviation that stops deviating fails
here until it is removed from the list. The README's "Deviations from peer test
vectors" section is checked against the same list.

``python tests/test_peer_vectors.py`` prints the counts per file.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from peer_cited_vectors import cited_vectors
from peer_vectors import Ctx, Vector, challenges, file_vectors, refused, scheme_of

from registry_nb.errors import InvalidReferenceError, RegistryError
from registry_nb.oci.reference import ImageReference, validate_digest
from registry_nb.remote.credentials import credentials_from_docker_config

README = Path(__file__).resolve().parents[1] / "README.md"
README_HEADING = "## Deviations from peer test vectors"


@dataclass(frozen=True)
class Deviation:
    """Why registry_nb differs, and a check of what it does instead."""

    reason: str
    ours: Callable[[Vector, Ctx], None]


def _nothing(vector: Vector, ctx: Ctx) -> None:
    """No separate check: the peer's expectation failing is the behaviour."""


DEVIATIONS: dict[str, Deviation] = {}


# ------------------------------------------------------------------ the cases

ALL: list[Vector] = [*file_vectors(), *cited_vectors()]


def test_vector_ids_are_unique() -> None:
    counts = Counter(v.where for v in ALL)
    assert [w for w, n in counts.items() if n > 1] == []


def test_every_deviation_names_a_vector() -> None:
    wheres = {v.where for v in ALL}
    assert sorted(set(DEVIATIONS) - wheres) == []


@pytest.mark.parametrize("vector", ALL, ids=[v.where for v in ALL])
def test_peer_vector(vector: Vector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = Ctx(tmp_path, monkeypatch)
    deviation = DEVIATIONS.get(vector.where)
    if deviation is None:
        vector.check(ctx)
        return
    with pytest.raises((AssertionError, RegistryError)):
        vector.check(ctx)
    deviation.ours(vector, ctx)


def _readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    assert README_HEADING in text, f"README.md has no {README_HEADING!r} section"
    section = text.split(README_HEADING, 1)[1]
    following = re.search(r"^## ", section, re.M)
    return section[: following.start()] if following else section


def test_readme_lists_the_deviations() -> None:
    section = _readme_section()
    missing = [where for where in DEVIATIONS if f"`{where}`" not in section]
    assert missing == [], "deviations missing from the README section"
    listed = set(re.findall(r"`([^`]+@[0-9a-f]{12}:[^`]+)`", section))
    assert sorted(listed - set(DEVIATIONS)) == [], "README lists vectors that now agree"
    counts = counts_by_source()
    for source, (agree, deviate, total) in counts.items():
        assert f"| {source} | {agree} | {deviate} | {total} |" in section, source


def counts_by_source() -> dict[str, tuple[int, int, int]]:
    """(agree, deviate, total) per vectors file (``cited`` for the written-out tables)."""
    totals: Counter[str] = Counter(v.source for v in ALL)
    deviating: Counter[str] = Counter(v.source for v in ALL if v.where in DEVIATIONS)
    return {source: (totals[source] - deviating[source], deviating[source], totals[source])
            for source in totals}


if __name__ == "__main__":
    counts = counts_by_source()
    print("| source | agree | deviate | total |\n|---|---|---|---|")
    for source, (agree, deviate, total) in counts.items():
        print(f"| {source} | {agree} | {deviate} | {total} |")
    print(f"| all | {sum(c[0] for c in counts.values())} | "
          f"{sum(c[1] for c in counts.values())} | {sum(c[2] for c in counts.values())} |")
    sys.exit(0)
