"""Backends chosen by name: one small registry per kind (detectors, parsers, embedders).

A registry maps a name to "module:Class"; the module is imported only when that backend is
asked for, so choosing SCRFD never imports mediapipe and the other way round.

    DETECTORS = Backends("detector", {"mediapipe": "facesearch.pipeline.detect.mediapipe:MediapipeDetector"})
    DETECTORS.create("mediapipe", settings)   # MediapipeDetector.from_settings(settings)
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from facesearch.errors import FaceSearchError
from facesearch.settings import ENV

if TYPE_CHECKING:
    from facesearch.settings import Settings


class _FromSettings(Protocol):
    @classmethod
    def from_settings(cls, settings: Settings): ...


T = TypeVar("T")


class Backends(Generic[T]):
    """The backends of one kind by name. `kind` is also the Settings field that names one."""

    def __init__(self, kind: str, targets: Mapping[str, str]):
        self.kind = kind
        self._targets: dict[str, str | type] = dict(targets)

    @property
    def names(self) -> tuple[str, ...]:
        """The known backends' names, sorted."""
        return tuple(sorted(self._targets))

    def register(self, name: str, backend: type | str) -> None:
        """Make a backend (a class, or "module:Class") available under `name` (replacing any)."""
        self._targets[name] = backend

    def unregister(self, name: str) -> None:
        """Forget the backend `name` (nothing happens for an unknown name)."""
        self._targets.pop(name, None)

    def target(self, name: str) -> str | type | None:
        """What `name` is registered as ("module:Class" or a class), without importing it;
        None for an unknown name."""
        return self._targets.get(name)

    def backend_class(self, name: str) -> type:
        """The class registered under `name`. Raises FaceSearchError (one line, naming the known
        backends and the setting) for an unknown name."""
        target = self._targets.get(name)
        if target is None:
            raise FaceSearchError(f"unknown {self.kind} {name!r} ({ENV.get(self.kind, self.kind)}): "
                                  f"use one of {', '.join(self.names)}")
        if isinstance(target, str):
            module, _, attribute = target.partition(":")
            target = getattr(importlib.import_module(module), attribute)
        return target

    def create(self, name: str, settings: Settings) -> T:
        """A new backend `name` configured by `settings` (its class's `from_settings`)."""
        cls: type[_FromSettings] = self.backend_class(name)
        return cls.from_settings(settings)
