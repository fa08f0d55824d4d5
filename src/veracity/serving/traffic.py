"""Which version of a model answers a request: serving, canary, shadow, and the way back.

Each model has one route. ``serving`` answers requests that name no version; ``previous``
is what ``rollback`` returns to; a ``canary`` takes a fixed share of the unnamed requests;
a ``shadow`` scores the same inputs as the serving version without its answer being
returned; promoting (or rolling back to) another version ends the canary. The canary
share is split by a running sum rather than a random draw: over any run of requests the
canary gets its percentage to within one request, so small shares are exact on a dashboard
and a test can check them without a tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["primary", "canary", "shadow", "pinned"]


@dataclass
class Route:
    serving: str
    previous: str | None = None
    canary: str | None = None
    canary_percent: float = 0.0
    shadow: str | None = None
    _credit: float = 0.0

    def choose(self) -> tuple[str, Role]:
        """The version for the next request that names none, and its role."""
        if self.canary is None or self.canary_percent <= 0:
            return self.serving, "primary"
        self._credit += self.canary_percent / 100
        if self._credit >= 1.0:
            self._credit -= 1.0
            return self.canary, "canary"
        return self.serving, "primary"

    def set_canary(self, version: str | None, percent: float) -> None:
        self.canary = version
        self.canary_percent = percent if version is not None else 0.0
        self._credit = 0.0

    def promote(self, version: str) -> None:
        """Serve ``version``; the one replaced becomes ``previous``. Switching ends the
        canary, whichever version it was: its share was chosen against the version being
        replaced, and a canary that outlived it would keep taking traffic nobody decided
        to give it. A shadow only scores, so it stays (unless it is the version promoted).
        """
        if version != self.serving:
            self.previous = self.serving
            self.serving = version
            self.set_canary(None, 0.0)
        if self.shadow == version:
            self.shadow = None

    def uses(self, version: str) -> bool:
        """Whether traffic reaches ``version`` through this route (it must stay loaded)."""
        return version in (self.serving, self.canary, self.shadow)
