"""Every reason an answer can give comes with what to do about it."""

from __future__ import annotations

from typing import get_args

from veracity.answers import ReasonModel
from veracity.verdicts.actions import REASON_ACTIONS
from veracity.verdicts.quality import Reason, ReasonCode


def test_every_reason_code_has_an_action() -> None:
    assert set(REASON_ACTIONS) == set(get_args(ReasonCode))
    assert all(action.strip().endswith(".") for action in REASON_ACTIONS.values())


def test_the_answer_carries_the_action_beside_the_message() -> None:
    model = ReasonModel.of(Reason("low_resolution", "the image is 48 px wide"))
    assert model.action == REASON_ACTIONS["low_resolution"]
    # Answers stored before actions were sent still read.
    assert ReasonModel(code="near_threshold", message="m").action is None
