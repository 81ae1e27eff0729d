"""Push, pull and build forms: live progress per layer, the build log, a layer chart.

Each is an :class:`~.operation.OperationForm` (its worker thread, redraw throttle,
cancel and outcome; the threading rules are in :mod:`.operation`) with its own
inputs and its one facade call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ..progress import ProgressCallback, ProgressEvent
from ..registry import ContainerRegistry
from ._common import human_bytes, parse_build_args
from .operation import LABEL_STYLE, WIDE, OperationForm, required
from .tracking import BuildTracker, Tracker

__all__ = ["OperationForm", "PushForm", "PullForm", "BuildForm", "parse_build_args"]


def _tag_field(name: str, value: str) -> str | None:
    """The Tag field's value for the facade: None (the name's own tag, else latest) when
    it is empty, or holds the default ``latest`` while the name carries ``:tag``/``@digest``."""
    text = value.strip()
    last = name.rsplit("/", 1)[-1]
    if not text or (text == "latest" and (":" in last or "@" in name)):
        return None
    return text




class PullForm(OperationForm):
    """Pull ``name:tag`` from the registry into the local Docker engine."""

    kind = "pull"
    verb = "Pull"
    done_verb = "Pulled"
    icon = "download"

    def __init__(self, registry: ContainerRegistry, *, image: str = "", tag: str = "latest",
                 **options: Any) -> None:
        self.image = widgets.Text(value=image, description="Image name",
                                  placeholder="e.g. team/app", style=LABEL_STYLE, layout=WIDE)
        self.tag = widgets.Text(value=tag, description="Tag", style=LABEL_STYLE, layout=WIDE)
        super().__init__(registry, **options)

    def title(self) -> str:
        return "Pull an image from"

    def _inputs(self) -> list[widgets.Widget]:
        return [self.image, self.tag]

    def _read(self) -> dict[str, Any]:
        return {"name": self.image.value, "tag": self.tag.value}

    def _operate(self, registry: ContainerRegistry, params: dict[str, Any],
                 progress: ProgressCallback, cancel: threading.Event) -> dict[str, Any]:
        name = required(params["name"], "image name")
        tag = _tag_field(name, params["tag"])
        params.update(name=name, tag=tag)
        return registry.pull_image(name, tag, progress=progress, cancel=cancel)

    def _describe(self, result: dict[str, Any]) -> str:
        size = result.get("size_mb")
        return f"Pulled {result.get('image')}" + (f" ({size:.2f} MB unpacked)" if size else "")


class PushForm(OperationForm):
    """Push a local image (``local_image``, or ``host/name:tag``) to ``name:tag``."""

    kind = "push"
    verb = "Push"
    done_verb = "Pushed"
    icon = "upload"

    def __init__(self, registry: ContainerRegistry, *, image: str = "", tag: str = "latest",
                 local_image: str = "", **options: Any) -> None:
        self.image = widgets.Text(value=image, description="Image name",
                                  placeholder="name in the registry", style=LABEL_STYLE,
                                  layout=WIDE)
        self.tag = widgets.Text(value=tag, description="Tag", style=LABEL_STYLE, layout=WIDE)
        self.local_image = widgets.Text(value=local_image, description="Local image",
                                        placeholder="optional: local name or id to tag first",
                                        style=LABEL_STYLE, layout=WIDE)
        super().__init__(registry, **options)

    def title(self) -> str:
        return "Push an image to"

    def _inputs(self) -> list[widgets.Widget]:
        return [self.local_image, self.image, self.tag]

    def _read(self) -> dict[str, Any]:
        return {"name": self.image.value, "tag": self.tag.value,
                "local_image": self.local_image.value}

    def _operate(self, registry: ContainerRegistry, params: dict[str, Any],
                 progress: ProgressCallback, cancel: threading.Event) -> dict[str, Any]:
        name = required(params["name"], "image name")
        tag = _tag_field(name, params["tag"])
        params.update(name=name, tag=tag)
        return registry.push_image(name, tag, local_image=params["local_image"].strip() or None,
                                   progress=progress, cancel=cancel)

    def _describe(self, result: dict[str, Any]) -> str:
        size = result.get("size_bytes")
        return f"Pushed {result.get('image')}" + (f" ({human_bytes(size)})" if size else "")

    def _stored_size(self, result: dict[str, Any]) -> int | None:
        return result.get("size_bytes")


class BuildForm(OperationForm):
    """Build from a Dockerfile (or a folder holding one) and push the result as ``name:tag``."""

    kind = "build"
    verb = "Build and push"
    done_verb = "Built and pushed"
    icon = "cogs"

    def __init__(self, registry: ContainerRegistry, *, dockerfile: str = "", image: str = "",
                 tag: str = "latest", build_args: str = "", no_cache: bool = False,
                 **options: Any) -> None:
        self.dockerfile = widgets.Text(value=dockerfile, description="Dockerfile",
                                       placeholder="path to a Dockerfile or its folder",
                                       style=LABEL_STYLE, layout=WIDE)
        self.image = widgets.Text(value=image, description="Image name", style=LABEL_STYLE,
                                  layout=WIDE)
        self.tag = widgets.Text(value=tag, description="Tag", style=LABEL_STYLE, layout=WIDE)
        self.build_args = widgets.Textarea(value=build_args, description="Build args",
                                           placeholder="KEY=VALUE, one per line",
                                           style=LABEL_STYLE, layout=WIDE)
        self.no_cache = widgets.Checkbox(value=no_cache, description="No cache",
                                         style=LABEL_STYLE)
        super().__init__(registry, **options)

    def title(self) -> str:
        return "Build an image and push it to"

    def _inputs(self) -> list[widgets.Widget]:
        return [self.dockerfile, self.image, self.tag, self.build_args, self.no_cache]

    def _read(self) -> dict[str, Any]:
        return {"dockerfile": self.dockerfile.value, "name": self.image.value,
                "tag": self.tag.value, "build_args": self.build_args.value,
                "no_cache": self.no_cache.value}

    def _new_tracker(self) -> Tracker:
        return BuildTracker()

    def _operate(self, registry: ContainerRegistry, params: dict[str, Any],
                 progress: ProgressCallback, cancel: threading.Event) -> dict[str, Any]:
        dockerfile = required(params["dockerfile"], "Dockerfile path")
        name = required(params["name"], "image name")
        tag = _tag_field(name, params["tag"])
        params.update(name=name, tag=tag)
        return registry.build_and_push(dockerfile, name, tag,
                                       build_args=parse_build_args(params["build_args"]),
                                       no_cache=params["no_cache"], progress=progress,
                                       cancel=cancel)

    def _describe(self, result: dict[str, Any]) -> str:
        return f"Built and pushed {result.get('image')}"

    def _stored_size(self, result: dict[str, Any]) -> int | None:
        return (result.get("push_result") or {}).get("size_bytes")


#: For type checkers: the callable shape a form accepts as ``progress=``.
Listener = Callable[[ProgressEvent], None]
