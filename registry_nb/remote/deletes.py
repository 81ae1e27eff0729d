"""DELETE requests with the token scope the registry's token service grants for deletes.

Registries disagree on the scope a delete needs (``REGISTRIES.md``, "Delete"): CNCF
distribution checks the ``delete`` action; Quay's token service grants no token at all
when the scope names ``delete`` and wants ``push`` instead (c/image ``deleteImage``).
The peers pick one string: skopeo (c/image) asks ``*``, crane (ggcr) ``push,pull``
(``DeleteScope = PushScope``), regclient ``pull,push`` and then whatever the 401
challenge names. Here the answers decide: a delete asks for ``delete`` first; when the
auth flow refuses it (the token service grants no token for that scope, or the
registry still answers 401 with the token it gave), it is sent once more under the
push convention. Any answer of the registry itself (a 403 ``DENIED`` of Docker Hub for a
tagged digest, a 405) is final: a refused delete is never sent again under other
rights. The convention that got through is remembered per transport, so later deletes
start with it.
"""

from __future__ import annotations

import logging
import threading
import weakref

import requests

from ..errors import AuthenticationError
from .challenges import repository_scope
from .transport import Transport

__all__ = ["DELETE_CONVENTIONS", "send_delete"]

log = logging.getLogger(__name__)

#: The actions asked for a delete, in the order tried: distribution's, then Quay's
#: (which is also what crane and regclient ask).
DELETE_CONVENTIONS: tuple[tuple[str, ...], ...] = (("delete",), ("pull", "push"))

_learned: weakref.WeakKeyDictionary[Transport, int] = weakref.WeakKeyDictionary()
_learned_lock = threading.Lock()


def send_delete(transport: Transport, path: str, repository: str) -> requests.Response:
    """Send ``DELETE path`` for ``repository``; the response (the caller reads its status).

    Raises the :class:`AuthenticationError` of the last convention tried when every one
    was refused (the request never reached the registry with a usable token).
    """
    with _learned_lock:
        start = _learned.get(transport, 0)
    order = list(range(start, len(DELETE_CONVENTIONS))) + list(range(start))
    refused: AuthenticationError | None = None
    for position, attempt in enumerate(order):
        last = position == len(order) - 1
        scope = repository_scope(repository, *DELETE_CONVENTIONS[attempt])
        try:
            response = transport.request("DELETE", path, scopes=[scope])
        except AuthenticationError as exc:
            refused = exc
            log.debug("registry %s refused a delete under scope %s (%s)%s", transport.host,
                      scope, type(exc).__name__, "" if last else "; trying the next convention")
            continue
        if attempt != start:
            with _learned_lock:
                _learned[transport] = attempt
        return response
    assert refused is not None
    raise refused
