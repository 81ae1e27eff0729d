"""Package databases inside layers: dpkg ``status``, apk ``installed``, Python metadata.

Pure parsers over bytes a layer scan collected (:func:`package_database` says which
paths to collect); :func:`parse_database` reads one file into packages keyed by
(ecosystem, name, version).
"""

from __future__ import annotations

import email.parser
import email.policy
import posixpath
import re

__all__ = ["PackageKey", "package_database", "parse_database", "parse_dpkg_status",
           "parse_apk_installed", "parse_python_metadata"]


def package_database(path: str) -> str | None:
    """The ecosystem (``deb``, ``apk``, ``python``) of a package database path, else None."""
    folder, name = posixpath.split(path)
    if path == "/var/lib/dpkg/status":
        return "deb"
    if folder == "/var/lib/dpkg/status.d" and not name.endswith((".md5sums", ".list")):
        return "deb"
    if path in ("/lib/apk/db/installed", "/usr/lib/apk/db/installed"):
        return "apk"
    if name == "METADATA" and folder.endswith(".dist-info"):
        return "python"
    if name == "PKG-INFO" and folder.endswith(".egg-info"):
        return "python"
    return None


PackageKey = tuple[str, str, "str | None"]


def parse_database(path: str, data: bytes) -> dict[PackageKey, tuple[str | None, None]]:
    """Packages of one database file, keyed by (ecosystem, name, version)."""
    ecosystem = package_database(path)
    text = data.decode("utf-8", "replace")
    if ecosystem == "deb":
        rows = parse_dpkg_status(text)
    elif ecosystem == "apk":
        rows = parse_apk_installed(text)
    elif ecosystem == "python":
        one = parse_python_metadata(text)
        rows = [one] if one else []
    else:
        rows = []
    return {(ecosystem or "", r["name"], r.get("version")): (r.get("architecture"), None)
            for r in rows}


def parse_dpkg_status(text: str) -> list[dict[str, str | None]]:
    """Installed packages of a dpkg ``status`` file (or a distroless ``status.d`` file).

    Paragraphs without ``Package`` are skipped, and so are those whose ``Status``
    does not end in ``installed`` (removed packages whose config files remain).
    """
    out: list[dict[str, str | None]] = []
    for paragraph in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if not line or line[0] in " \t" or ":" not in line:
                continue  # continuation lines (descriptions, conffiles) carry nothing we need
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
        name = fields.get("Package")
        if not name:
            continue
        status = fields.get("Status")
        if status is not None and (not status.split() or status.split()[-1] != "installed"):
            continue
        out.append({"name": name, "version": fields.get("Version") or None,
                    "architecture": fields.get("Architecture") or None})
    return out


def parse_apk_installed(text: str) -> list[dict[str, str | None]]:
    """Installed packages of Alpine's ``lib/apk/db/installed`` (``P:``, ``V:``, ``A:`` lines)."""
    out: list[dict[str, str | None]] = []
    for record in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        for line in record.splitlines():
            if len(line) > 1 and line[1] == ":":
                fields.setdefault(line[0], line[2:].strip())
        if fields.get("P"):
            out.append({"name": fields["P"], "version": fields.get("V") or None,
                        "architecture": fields.get("A") or None})
    return out


def parse_python_metadata(text: str) -> dict[str, str | None] | None:
    """Name and version from a ``METADATA`` / ``PKG-INFO`` file (email-style headers)."""
    head = text.split("\n\n", 1)[0]
    message = email.parser.Parser(policy=email.policy.compat32).parsestr(head, headersonly=True)
    name = (message.get("Name") or "").strip()
    if not name:
        return None
    return {"name": name, "version": (message.get("Version") or "").strip() or None,
            "architecture": None}
