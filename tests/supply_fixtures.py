"""The real supply-chain fixtures in ``../shared/data/supply-chain`` and tamper helpers.

The fixtures are third-party files (sigstore, notation, spdx, buildkit, trivy) that the
project reads from the shared folder beside the repository and never copies in; their
README says where each comes from and how it should verify. A missing folder fails the
test with a message saying what to do, it does not skip.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SUPPLY = SHARED / "data" / "supply-chain"

#: The notation fixture's signed manifest (notation-go internal/testdata/oci-layout).
NOTATION_MANIFEST = "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0"
#: The subject of cosign's keyless DSSE bundle fixture.
COSIGN_BUNDLE_SUBJECT = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"
COSIGN_BUNDLE_IDENTITY = ("cody@soyland.com", "https://github.com/login/oauth")
SIGSTORE_PY_IDENTITY = ("william@yossarian.net", "https://github.com/login/oauth")


def supply_path(name: str) -> Path:
    """The path of one fixture; fails the test clearly when the shared folder is missing."""
    path = SUPPLY / name
    if not path.exists():
        pytest.fail(
            f"supply-chain fixture {path} is missing: the tests read the real fixtures from "
            f"the shared folder beside the repository ({SUPPLY}); clone or copy shared/ "
            "next to the checkout (CI does), never into the project.",
            pytrace=False,
        )
    return path


def read_bytes(name: str) -> bytes:
    """The bytes of one fixture."""
    return supply_path(name).read_bytes()


def read_json(name: str) -> Any:
    """One fixture parsed as JSON."""
    return json.loads(read_bytes(name))


def flip(data: bytes, position: int, mask: int = 0x01) -> bytes:
    """``data`` with one bit of the byte at ``position`` flipped."""
    out = bytearray(data)
    out[position] ^= mask
    return bytes(out)


def flip_b64(text: str, position: int, *, urlsafe: bool = False) -> str:
    """A base64 (or base64url, unpadded) string whose decoded byte ``position`` is flipped."""
    if urlsafe:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.urlsafe_b64encode(flip(raw, position)).decode().rstrip("=")
    raw = base64.b64decode(text)
    return base64.b64encode(flip(raw, position)).decode()


def b64_length(text: str, *, urlsafe: bool = False) -> int:
    """How many bytes a base64 (or base64url) string decodes to."""
    if urlsafe:
        return len(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    return len(base64.b64decode(text))


def positions(length: int, samples: int) -> list[int]:
    """Up to ``samples`` byte positions spread over ``length`` bytes, first and last included."""
    if length <= samples:
        return list(range(length))
    step = (length - 1) / (samples - 1)
    return sorted({round(i * step) for i in range(samples)})
