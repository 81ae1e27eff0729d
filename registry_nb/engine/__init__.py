"""The engine layer: a Docker engine through docker-py (build, push, pull, local images).

:class:`~registry_nb.engine.client.Engine` wraps docker-py's low-level streaming API;
:mod:`~registry_nb.engine.messages` reads what docker's streams say.
"""

from __future__ import annotations

from .client import Engine, EngineUnavailableError
from .inputs import auth_config, build_context
from .messages import classify_engine_message, progress_event_from_docker

__all__ = ["Engine", "EngineUnavailableError", "auth_config", "build_context",
           "progress_event_from_docker", "classify_engine_message"]
