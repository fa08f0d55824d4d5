"""Which version of a model answers a request: serving, canary, shadow, and the way back.

Each model has one route. ``serving`` answers requests that name no version; ``previous``
is what ``rollback`` returns to; a ``canary`` takes a fixed share of the unnamed requests;
a ``shadow`` scores the same inputs as the serving version without its answer being
returned; promoting (or rolling back to) another version ends the canary.

What a route should be (``RouteSpec``) is a plain value: it is what an admin change
produces, what the shared store keeps as the desired state, and what every replica adopts.
``Route`` is one replica's live route over a spec. Its canary share is split by a running
sum rather than a random draw: over any run of requests the canary gets its percentage to
within one request, so small shares are exact on a dashboard and a test can check them
without a tolerance (across N replicas, to within N).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["primary", "canary", "shadow", "pinned"]


@dataclass(frozen=True)
class RouteSpec:
    serving: str
    previous: str | None = None
    canary: str | None = None
    canary_percent: float = 0.0
    shadow: str | None = None

    def promoted(self, version: str) -> RouteSpec:
        """Serving ``version``; the one replaced becomes ``previous``. Switching ends the
        canary, whichever version it was: its share was chosen against the version being
        replaced, and a canary that outlived it would keep taking traffic nobody decided
        to give it. A shadow only scores, so it stays (unless it is the version promoted).
        """
        spec = self
        if version != self.serving:
            spec = RouteSpec(serving=version, previous=self.serving, shadow=self.shadow)
        if spec.shadow == version:
            spec = dataclasses.replace(spec, shadow=None)
        return spec

    def with_traffic(self, canary: str | None, percent: float, shadow: str | None) -> RouteSpec:
        return dataclasses.replace(
            self,
            canary=canary,
            canary_percent=percent if canary is not None else 0.0,
            shadow=shadow,
        )

    def uses(self, version: str) -> bool:
        """Whether traffic reaches ``version`` through this route (it must stay loaded)."""
        return version in (self.serving, self.canary, self.shadow)

    def to_document(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> RouteSpec:
        return cls(
            serving=str(document["serving"]),
            previous=document.get("previous"),
            canary=document.get("canary"),
            canary_percent=float(document.get("canary_percent") or 0.0),
            shadow=document.get("shadow"),
        )


class Route:
    """One replica's route for a model: a spec, and the running sum that splits the canary."""

    def __init__(self, serving: str) -> None:
        self.spec = RouteSpec(serving=serving)
        self._credit = 0.0

    @property
    def serving(self) -> str:
        return self.spec.serving

    @property
    def previous(self) -> str | None:
        return self.spec.previous

    @property
    def canary(self) -> str | None:
        return self.spec.canary

    @property
    def canary_percent(self) -> float:
        return self.spec.canary_percent

    @property
    def shadow(self) -> str | None:
        return self.spec.shadow

    def choose(self) -> tuple[str, Role]:
        """The version for the next request that names none, and its role."""
        spec = self.spec
        if spec.canary is None or spec.canary_percent <= 0:
            return spec.serving, "primary"
        self._credit += spec.canary_percent / 100
        if self._credit >= 1.0:
            self._credit -= 1.0
            return spec.canary, "canary"
        return spec.serving, "primary"

    def adopt(self, spec: RouteSpec) -> None:
        """Route by ``spec`` from the next request on. The running sum starts again only
        when the canary or its share changed, so re-adopting the same spec (every replica
        applies every revision) leaves the split exact."""
        if (spec.canary, spec.canary_percent) != (self.spec.canary, self.spec.canary_percent):
            self._credit = 0.0
        self.spec = spec

    def uses(self, version: str) -> bool:
        return self.spec.uses(version)
