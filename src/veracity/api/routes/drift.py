"""``GET /admin/drift``: each model version's drift signals over the live window (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from veracity.api.deps import AdminDep, DriftMonitorDep
from veracity.api.openapi import MODEL_ERRORS, STORE_ERRORS, only
from veracity.drift.report import DriftReport, drift_report
from veracity.repository.layout import NAME_PATTERN

router = APIRouter(tags=["models"])


@router.get(
    "/admin/drift",
    response_model=DriftReport,
    summary="Drift of each model version's answers against its reference profile (admin)",
    description="Scores the last window (VERACITY_DRIFT_WINDOW_S, or window_s) of stored "
    "answers, from every replica, against the profile built when the version was "
    "calibrated: one population stability index per signal, and reviewers' agreement. "
    "The same figures are the veracity_drift_score and veracity_drift_alert gauges.",
    responses=only(MODEL_ERRORS, 401, 403) | only(STORE_ERRORS, 404, 422, 429, 503),
)
async def drift(
    _: AdminDep,
    monitor: DriftMonitorDep,
    model: Annotated[str | None, Query(pattern=NAME_PATTERN, description="One model.")] = None,
    version: Annotated[str | None, Query(pattern=NAME_PATTERN, description="One version.")] = None,
    window_s: Annotated[
        float | None,
        Query(ge=60, le=30 * 86_400, description="The window, seconds back from now."),
    ] = None,
) -> DriftReport:
    state = await monitor.assess(model=model, version=version, window_s=window_s)
    return drift_report(state.window, state.versions, state.unmonitored)
