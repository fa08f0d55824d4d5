"""``veracity models``: the admin API of a running service, from a shell.

A thin HTTP client (httpx) over GET /models and /admin/models: the service does the work,
so the command behaves exactly like the API (same checks, same errors), and it works the
same against a laptop, a Compose service or one pod behind a port-forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from veracity.errors import VeracityError


class AdminRequestError(VeracityError):
    """The service refused the change (its error code and message), or could not be
    reached."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ModelAdmin:
    url: str
    api_key: str | None
    timeout_s: float = 300.0  # a load warms the model up before answering
    # Changes are made only if the models are still at this revision (If-Match).
    if_revision: int | None = None

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"X-API-Key": self.api_key} if self.api_key else {}
        if method != "GET" and self.if_revision is not None:
            headers["If-Match"] = f'"{self.if_revision}"'

        try:
            response = httpx.request(
                method,
                self.url.rstrip("/") + path,
                json=body,
                headers=headers,
                timeout=self.timeout_s,
                follow_redirects=False,
            )
        except httpx.HTTPError as e:
            raise AdminRequestError(f"cannot reach {self.url}: {e}") from e
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400:
            error = payload.get("error") if isinstance(payload, dict) else None
            if isinstance(error, dict):
                detail = f"{error.get('code')}: {error.get('message')}"
            else:
                detail = response.text[:300]
            raise AdminRequestError(
                f"{method} {path} answered {response.status_code} ({detail})",
                status=response.status_code,
            )
        if not isinstance(payload, dict):
            raise AdminRequestError(f"{method} {path} answered something other than JSON")
        return payload

    def list(self) -> dict[str, Any]:
        return self._call("GET", "/models")

    def load(self, name: str, version: str) -> dict[str, Any]:
        return self._call("POST", f"/admin/models/{name}/versions/{version}/load")

    def unload(self, name: str, version: str) -> dict[str, Any]:
        return self._call("POST", f"/admin/models/{name}/versions/{version}/unload")

    def promote(self, name: str, version: str) -> dict[str, Any]:
        return self._call("POST", f"/admin/models/{name}/promote", {"version": version})

    def rollback(self, name: str) -> dict[str, Any]:
        return self._call("POST", f"/admin/models/{name}/rollback")

    def traffic(
        self, name: str, *, canary: str | None, percent: float, shadow: str | None
    ) -> dict[str, Any]:
        body = {"canary_version": canary, "canary_percent": percent, "shadow_version": shadow}
        return self._call("PUT", f"/admin/models/{name}/traffic", body)


def format_listing(listing: dict[str, Any]) -> str:
    """GET /models as a table: one line per version, roles marked."""
    lines = [f"{'MODEL':<20} {'VERSION':<12} {'STATE':<10} {'ROLE':<18} MEMORY"]
    for model in listing["models"]:
        canary = model.get("canary") or {}
        for version in model["versions"]:
            roles = []
            if version["version"] == model["serving_version"]:
                roles.append("serving" + (" (default)" if model["default"] else ""))
            if version["version"] == model["previous_version"]:
                roles.append("previous")
            if version["version"] == canary.get("version"):
                roles.append(f"canary {canary['percent']:g}%")
            if version["version"] == model["shadow_version"]:
                roles.append("shadow")
            memory = version.get("memory_bytes")
            lines.append(
                f"{model['name']:<20} {version['version']:<12} {version['state']:<10} "
                f"{', '.join(roles) or '-':<18} " + (f"{memory / 2**20:.1f} MB" if memory else "-")
            )
    memory = listing["memory"]
    lines.append(
        f"memory: {memory['used_bytes'] / 2**20:.1f} MB of {memory['budget_bytes'] / 2**20:.0f} MB"
    )
    replicas = listing.get("replicas") or []
    if replicas:
        lines.append(f"desired state: revision {listing.get('revision', 0)}")
        lines.append(f"{'REPLICA':<32} {'STATE':<12} {'APPLIED':<8} SERVING")
        for replica in replicas:
            serving = ", ".join(f"{m}:{v}" for m, v in sorted(replica["serving"].items()))
            mark = " (answered)" if replica["replica_id"] == listing.get("replica_id") else ""
            lines.append(
                f"{replica['replica_id'] + mark:<32} {replica['state']:<12} "
                f"{replica['applied_revision']:<8} {serving or '-'}"
                + (f"  ({replica['reason']})" if replica.get("reason") else "")
            )
    return "\n".join(lines)
