"""``login``: check a username and password against a registry, then store them in the
docker config as ``docker login`` does (``registry-nb``, docker and skopeo then use them)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import CliError, add_json, ask_password, emit, read_password


def _cmd_login(args: argparse.Namespace) -> int:
    from ..remote.credentials import RegistryCredentials
    from ..remote.distribution import RegistryClient
    from ..remote.login import store_docker_login

    if args.password_stdin:
        password = read_password(args)
    elif sys.stdin.isatty():
        password = ask_password("Password: ")
    else:
        raise CliError("no password: stdin is not a terminal.",
                       "Pipe it in with --password-stdin, e.g. "
                       "`echo \"$PASSWORD\" | registry-nb login HOST -u USER --password-stdin`.",
                       code=2)
    if not password:
        raise CliError("the password is empty.", "Give the password on stdin with "
                       "--password-stdin.", code=2)
    creds = RegistryCredentials(username=args.username, password=password,
                                registry_url=args.registry)
    with RegistryClient.connect(args.registry, creds, insecure=args.insecure,
                                ca_bundle=args.ca_bundle) as client:
        answer = client.ping()  # a refused password raises CredentialsRefusedError here
        host = client.host
    stored = store_docker_login(host, args.username, password)
    data = {"registry": host, "username": args.username, "auth_scheme": answer["auth_scheme"],
            **stored}
    where = f"credential helper {stored['helper']}" if stored["helper"] else stored["config"]
    emit(args, data, f"Login Succeeded: {args.username} on {host} (saved in {where})")
    return 0


def register(commands: Any) -> None:
    """Add ``login``."""
    login = commands.add_parser(
        "login", help="log in to a registry (writes the docker config)",
        description="Check USER's password against REGISTRY, then store it in the docker "
                    "config ($DOCKER_CONFIG/config.json) as docker login does: in the "
                    "credential helper it names, else as auths[host].auth (mode 0600).")
    login.add_argument("registry", metavar="REGISTRY", help="host[:port] or URL")
    login.add_argument("-u", "--username", required=True)
    login.add_argument("--password-stdin", action="store_true",
                       help="read the password from stdin (else ask on the terminal)")
    login.add_argument("--insecure", action="store_true",
                       help="allow plain HTTP or unverified TLS for a non-loopback host")
    login.add_argument("--ca-bundle", metavar="FILE", help="PEM file of CAs to trust")
    add_json(login)
    login.set_defaults(func=_cmd_login)
