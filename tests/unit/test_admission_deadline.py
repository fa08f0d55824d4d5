"""A deadline carries the setting that sets it, so the 504 names what an operator can change."""

from __future__ import annotations

import asyncio

import pytest

from veracity.errors import DeadlineExceededError
from veracity.serving.admission import Admission, Deadline
from veracity.settings import AdmissionLimits


def _overrun(admission: Admission, deadline: Deadline | None) -> DeadlineExceededError:
    async def work() -> None:
        async with admission.admitted(deadline):
            await asyncio.sleep(5)

    with pytest.raises(DeadlineExceededError) as caught:
        asyncio.run(work())
    return caught.value


def test_a_request_deadline_names_the_request_setting() -> None:
    admission = Admission(AdmissionLimits(request_timeout_s=0.05))
    error = _overrun(admission, None)
    assert "0.05 s deadline (VERACITY_REQUEST_TIMEOUT_S)" in error.message
    assert admission.in_flight == 0


def test_a_job_deadline_names_the_job_setting() -> None:
    admission = Admission(AdmissionLimits())
    error = _overrun(admission, Deadline(0.05, "VERACITY_JOB_TIMEOUT_S"))
    assert "0.05 s deadline (VERACITY_JOB_TIMEOUT_S)" in error.message
    assert admission.in_flight == 0
