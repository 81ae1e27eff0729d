"""Platforms (``os/architecture[/variant]``) and what runs on what."""

from __future__ import annotations

import platform as _host
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidPlatformError
from .jsonfields import Fields

__all__ = ["Platform"]


#: ``platform.machine()`` and common aliases → (GOARCH, variant).
_ARCH_ALIASES: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None), "x86-64": ("amd64", None), "amd64": ("amd64", None),
    "x64": ("amd64", None),
    "aarch64": ("arm64", None), "arm64": ("arm64", None), "armv8": ("arm64", None),
    "armv8l": ("arm", "v7"), "armv7l": ("arm", "v7"), "armv7": ("arm", "v7"),
    "armhf": ("arm", "v7"), "armv6l": ("arm", "v6"), "armv6": ("arm", "v6"),
    "armel": ("arm", "v6"), "armv5tel": ("arm", "v5"), "armv5l": ("arm", "v5"),
    "i386": ("386", None), "i486": ("386", None), "i586": ("386", None),
    "i686": ("386", None), "x86": ("386", None), "386": ("386", None),
    "ppc64le": ("ppc64le", None), "s390x": ("s390x", None), "riscv64": ("riscv64", None),
    "loongarch64": ("loong64", None), "mips64": ("mips64", None),
}
#: Variant assumed when a platform gives none.
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7", "amd64": "v1"}


@dataclass(frozen=True)
class Platform:
    """An OCI platform: ``os/architecture[/variant]`` plus Windows ``os_version``."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    features: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]`` (``linux/arm64/v8``); arch aliases are normalised.

        Raises :class:`RegistryError` for anything else.
        """
        parts = text.strip().lower().split("/") if isinstance(text, str) else []
        if not 2 <= len(parts) <= 3 or not all(re.fullmatch(r"[a-z0-9._-]+", p) for p in parts):
            raise InvalidPlatformError(
                f"invalid platform {text!r}",
                hint="Write platforms as os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8.",
            )
        os_name, arch = parts[0], parts[1]
        variant = parts[2] if len(parts) == 3 else None
        arch, implied = _ARCH_ALIASES.get(arch, (arch, None))
        return cls(os_name, arch, variant or implied)

    @classmethod
    def host(cls) -> Platform:
        """This machine's platform with Go names (x86_64 → amd64, armv7l → arm/v7...)."""
        system = (_host.system() or "linux").lower()
        machine = (_host.machine() or "amd64").lower()
        arch, variant = _ARCH_ALIASES.get(machine, (machine, None))
        return cls(system, arch, variant)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "platform", kind: str = "manifest") -> Platform:
        """Read an OCI ``platform`` object; bad shapes raise InvalidManifestError."""
        f = Fields(data, where, kind)
        features = f.strings("os.features") or f.strings("features") or []
        return cls(
            os=f.string("os", required=True) or "",
            architecture=f.string("architecture", required=True) or "",
            variant=f.string("variant") or None,
            os_version=f.string("os.version") or None,
            features=tuple(features),
        )

    def to_dict(self) -> dict[str, Any]:
        """The OCI JSON form."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.features:
            out["os.features"] = list(self.features)
        if self.variant:
            out["variant"] = self.variant
        return out

    def _key(self) -> tuple[str, str, str | None]:
        arch, implied = _ARCH_ALIASES.get(self.architecture.lower(), (self.architecture, None))
        variant = (self.variant or implied or _DEFAULT_VARIANT.get(arch) or "").lower() or None
        return self.os.lower(), arch, variant

    def matches(self, other: Platform) -> bool:
        """True when ``other`` is this platform (``arm64`` ≡ ``arm64/v8``, ``arm`` ≡ ``arm/v7``).

        ``os_version`` is compared only when this platform sets it.
        """
        if self.os_version and self.os_version != other.os_version:
            return False
        return self._key() == other._key()

    def runs(self, other: Platform) -> bool:
        """True when a machine of this platform can run ``other`` (arm/v7 runs arm/v6...)."""
        if self.matches(other):
            return True
        mine, theirs = self._key(), other._key()
        if mine[:2] != theirs[:2] or mine[1] != "arm":
            return False
        return _arm_level(theirs[2]) <= _arm_level(mine[2])

    @property
    def variant_level(self) -> int:
        """The numeric level of the (normalised) variant: ``v7`` → 7; 99 when not numbered."""
        return _arm_level(self._key()[2])

    @property
    def is_unknown(self) -> bool:
        """True for ``unknown/unknown`` (buildkit's attestation manifests)."""
        return self.os == "unknown" and self.architecture == "unknown"

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base


def _arm_level(variant: str | None) -> int:
    match = re.fullmatch(r"v(\d+)", variant or "")
    return int(match.group(1)) if match else 99
