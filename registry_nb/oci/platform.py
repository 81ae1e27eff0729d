"""Platforms (``os/architecture[/variant]``) and what runs on what, as containerd has it.

:meth:`Platform.parse` reads containerd's specifier syntax
(``<os>[(<os.version>[+<feature>]*)][/<arch>[/<variant>]]``, or a lone OS or
architecture filled in from this machine) and gives what containerd's ``Parse`` gives.
:meth:`Platform.matches` and :meth:`Platform.runs` follow containerd's ``OnlyStrict``
and ``Only`` matchers (``containerd/platforms`` ``compare.go``): names are normalised
first (``aarch64`` is ``arm64``, ``arm`` is ``arm/v7``, ``arm64/v8`` is ``arm64``,
``arm64/v9.0`` is ``arm64/v9``, ``amd64/v1`` is ``amd64``), then

- ``amd64/vN`` runs ``amd64/vN``...``v1`` and ``386``;
- ``arm/vN`` runs ``arm/vN``...``v5`` (``arm/v5`` and below run only themselves);
- ``arm64/v8.x`` runs ``v8.x``...``v8``; ``arm64/v9.x`` runs ``v9.x``...``v9`` and
  ``v8.(x+5)``...``v8`` (capped at ``v8.9``); every ``arm64`` runs ``arm/v8``...``v5``.
"""

from __future__ import annotations

import platform as _host
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidPlatformError
from .jsonfields import Fields

__all__ = ["Platform"]

#: ``platform.machine()`` spellings → (GOARCH, variant), for :meth:`Platform.host`.
_MACHINE_ALIASES: dict[str, tuple[str, str | None]] = {
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
# containerd database.go (from Go's syslist): what a lone specifier may name.
_KNOWN_OS = frozenset({
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js",
    "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "windows", "zos"})
_KNOWN_ARCH = frozenset({
    "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le",
    "loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc",
    "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm"})
_OS_RE = re.compile(r"([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.%-]*)((?:\+[A-Za-z0-9_.%-]+)*)\))?")
_PART_RE = re.compile(r"[A-Za-z0-9_.-]+")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_OS_OPTION_ESCAPES = {"%": "%25", "+": "%2B", "(": "%28", ")": "%29", "/": "%2F"}
_HINT = ("Write platforms as os/arch[/variant] (linux/amd64, linux/arm64/v8), optionally "
         "with os options (windows(10.0.17763)/amd64), or a lone OS or architecture.")


def _normalize_os(name: str) -> str:
    name = name.lower()
    return "darwin" if name == "macos" else name


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    """containerd's ``normalizeArch``: Go names and the canonical (often empty) variant."""
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        if variant in ("8", "v8", "v8.0"):
            variant = ""
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
        return "arm64", variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
    return arch, variant


def _decode_os_option(text: str, specifier: str) -> str:
    if _BAD_ESCAPE_RE.search(text):
        raise InvalidPlatformError(f"invalid platform {specifier!r}: bad %-escape in {text!r}",
                                   hint=_HINT)
    return urllib.parse.unquote(text)


def _encode_os_option(text: str) -> str:
    return "".join(_OS_OPTION_ESCAPES.get(c, c) for c in text)


def _level(variant: str) -> int | None:
    number = variant[1:] if variant.startswith("v") else variant
    return int(number) if number.isdigit() else None


@dataclass(frozen=True)
class Platform:
    """An OCI platform: ``os/architecture[/variant]``, ``os.version`` and ``os.features``."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    features: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse a containerd platform specifier (``linux/arm64/v8``, ``windows(10.0.17763)``).

        Gives what containerd's ``Parse`` gives: ``Linux/x86_64`` is ``linux/amd64``,
        ``linux/arm`` keeps no variant (v7 is implied), ``linux/arm64/v8`` keeps ``v8``; a
        lone OS takes this machine's architecture and a lone architecture its OS.
        Raises :class:`InvalidPlatformError` for anything else (wildcards included).
        """
        if not isinstance(text, str) or "*" in text:
            raise InvalidPlatformError(f"invalid platform {text!r}", hint=_HINT)
        parts = text.split("/", 3)
        os_match = _OS_RE.fullmatch(parts[0])
        if (os_match is None or len(parts) > 3
                or not all(_PART_RE.fullmatch(p) for p in parts[1:])):
            raise InvalidPlatformError(f"invalid platform {text!r}", hint=_HINT)
        os_name = _normalize_os(os_match.group(1))
        os_version = _decode_os_option(os_match.group(2) or "", text) or None
        features = tuple(_decode_os_option(f, text)
                         for f in (os_match.group(3) or "").split("+")[1:])
        if len(parts) == 1:
            host = cls.host()
            if os_name in _KNOWN_OS:
                arch = host.architecture
                variant = host.variant if arch == "arm" and host.variant != "v7" else ""
            else:
                arch, variant = _normalize_arch(parts[0], "")
                if arch not in _KNOWN_ARCH:
                    raise InvalidPlatformError(
                        f"invalid platform {text!r}: unknown operating system or "
                        "architecture", hint=_HINT)
                os_name, os_version, features = host.os, None, ()
        else:
            arch, variant = _normalize_arch(parts[1], parts[2] if len(parts) == 3 else "")
        if len(parts) < 3 and arch == "arm" and variant == "v7":
            variant = ""
        if len(parts) == 3 and arch == "arm64" and not variant:
            variant = "v8"
        return cls(os_name, arch, variant or None, os_version, features)

    @classmethod
    def host(cls) -> Platform:
        """This machine's platform with Go names (x86_64 → amd64, armv7l → arm/v7...)."""
        system = (_host.system() or "linux").lower()
        machine = (_host.machine() or "amd64").lower()
        arch, variant = _MACHINE_ALIASES.get(machine, (machine, None))
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

    def normalized(self) -> Platform:
        """containerd's ``Normalize``: canonical names, default variants dropped except arm's."""
        arch, variant = _normalize_arch(self.architecture, self.variant or "")
        return Platform(_normalize_os(self.os), arch, variant or None, self.os_version,
                        tuple(sorted(set(self.features))))

    def matches(self, other: Platform) -> bool:
        """True when ``other`` is this platform (containerd's ``OnlyStrict``).

        ``arm64`` is ``arm64/v8``, ``arm`` is ``arm/v7``; ``os.version`` is compared
        only when both give one (Windows by build: major.minor.build). When this
        platform names ``os.features``, ``other``'s must all be among them (containerd
        also requires it when none are named, which would make ``windows/amd64`` miss
        every Windows image with ``win32k``).
        """
        mine, theirs = self.normalized(), other.normalized()
        if (mine.os, mine.architecture, mine.variant) != (theirs.os, theirs.architecture,
                                                           theirs.variant):
            return False
        if mine.os_version and theirs.os_version:
            width = 3 if mine.os == "windows" else None
            if mine.os_version.split(".")[:width] != theirs.os_version.split(".")[:width]:
                return False
        return not mine.features or set(theirs.features) <= set(mine.features)

    def compatible(self) -> list[Platform]:
        """What a machine of this platform runs, best first (containerd's ``Only`` vector)."""
        p = self.normalized()
        vector = [p]

        def same(arch: str, variant: str | None) -> Platform:
            return Platform(p.os, arch, variant, p.os_version, p.features)

        level = _level(p.variant or "")
        if p.architecture == "amd64":
            if level is not None and level > 1:
                vector += [same("amd64", f"v{n}") for n in range(level - 1, 0, -1)]
            vector.append(same("386", None))
        elif p.architecture == "arm":
            if level is not None and level > 5:
                vector += [same("arm", f"v{n}") for n in range(level - 1, 4, -1)]
        elif p.architecture == "arm64":
            vector += self._arm64_lower(p, same)
        return vector

    @staticmethod
    def _arm64_lower(p: Platform, same: Any) -> list[Platform]:
        variant = p.variant or "v8"
        major_text, _, minor_text = variant.partition(".")
        major = _level(major_text)
        out: list[Platform] = []
        if major is not None and major >= 8:
            minor = int(minor_text) if len(variant) == 4 and minor_text.isdigit() else 0
            if major == 9:
                out += [same("arm64", f"v9.{n}" if n else "v9") for n in range(minor - 1, -1, -1)]
                minor, major = min(minor + 5, 9), 8  # v9.0 diverged from v8.5
                out.append(same("arm64", f"v8.{minor}"))
            out += [same("arm64", f"v{major}.{n}" if n else f"v{major}")
                    for n in range(minor - 1, -1, -1)]
        if variant.startswith(("v8.", "v9.")):
            variant = "v8"
        return out + same("arm", variant).compatible()

    def preference(self, other: Platform) -> int | None:
        """Rank of ``other`` among what this platform runs (0 = itself); None if it cannot."""
        for rank, candidate in enumerate(self.compatible()):
            if candidate.matches(other):
                return rank
        return None

    def runs(self, other: Platform) -> bool:
        """True when a machine of this platform can run ``other`` (containerd's ``Only``)."""
        return self.preference(other) is not None

    @property
    def is_unknown(self) -> bool:
        """True for ``unknown/unknown`` (buildkit's attestation manifests)."""
        return self.os == "unknown" and self.architecture == "unknown"

    def format(self, *, os_options: bool = False) -> str:
        """``os/arch[/variant]`` (containerd's ``Format``); with ``os_options`` also
        ``os(version+features)`` (``FormatAll``), escaped so :meth:`parse` reads it back."""
        if not self.os:
            return "unknown"
        head = self.os
        if os_options:
            options = _encode_os_option(self.os_version or "") + "".join(
                "+" + _encode_os_option(f) for f in sorted(self.features))
            if options:
                head = f"{self.os}({options})"
        return "/".join(part for part in (head, self.architecture, self.variant) if part)

    def __str__(self) -> str:
        return self.format()
