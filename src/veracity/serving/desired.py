"""What every replica should serve: each model's route and the versions kept warm.

One value, numbered by revision. An admin change makes a new one from the latest (the
transitions below are pure, so a change is checked and loaded before anything is
switched); the shared store keeps it (veracity.store.revisions), and every replica adopts
the whole value, never a diff: a replica that missed revisions, or starts later, reaches
the same state as the others by applying only the latest.

Revision 0 is a replica's own start-up state (each model's newest version that loads, or the
pinned one): nothing has been decided by an admin yet, and nothing is stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from veracity.serving.traffic import RouteSpec

FORMAT = 1  # the document's layout, stored with it


@dataclass(frozen=True)
class DesiredState:
    revision: int
    routes: Mapping[str, RouteSpec]
    warm: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def route(self, name: str) -> RouteSpec | None:
        return self.routes.get(name)

    def needs(self, name: str) -> frozenset[str]:
        """The versions of ``name`` that must be loaded: its route's and the warm ones."""
        route = self.routes.get(name)
        used = {route.serving, route.canary, route.shadow} if route is not None else set()
        return frozenset(v for v in used if v is not None) | self.warm.get(name, frozenset())

    def with_route(self, name: str, spec: RouteSpec) -> DesiredState:
        return dataclasses.replace(self, routes={**self.routes, name: spec})

    def with_warm(self, name: str, versions: frozenset[str]) -> DesiredState:
        warm = {**self.warm, name: versions}
        return dataclasses.replace(self, warm={k: v for k, v in warm.items() if v})

    def at(self, revision: int) -> DesiredState:
        return dataclasses.replace(self, revision=revision)

    def to_document(self) -> dict[str, Any]:
        models: dict[str, Any] = {}
        for name in sorted({*self.routes, *self.warm}):
            spec = self.routes.get(name)
            models[name] = {
                "route": spec.to_document() if spec is not None else None,
                "warm": sorted(self.warm.get(name, frozenset())),
            }
        return {"format": FORMAT, "models": models}

    @classmethod
    def from_document(cls, revision: int, document: Mapping[str, Any]) -> DesiredState:
        models: Mapping[str, Any] = document.get("models") or {}
        return cls(
            revision=revision,
            routes={
                name: RouteSpec.from_document(m["route"])
                for name, m in models.items()
                if m.get("route")
            },
            warm={
                name: frozenset(str(v) for v in m.get("warm") or ())
                for name, m in models.items()
                if m.get("warm")
            },
        )
