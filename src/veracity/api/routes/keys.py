"""The caller's own key: what a client (the console) needs to know after signing in."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from veracity.api.deps import CallerDep
from veracity.api.openapi import AUTH_ERRORS

router = APIRouter(tags=["keys"])


class KeyInfo(BaseModel):
    key_id: str | None = Field(
        description="A digest prefix of the key (never the key), as predictions record it; "
        "null when the deployment runs without keys."
    )
    admin: bool = Field(
        description="The key is an admin key (VERACITY_ADMIN_API_KEYS): it sees every key's "
        "predictions and may manage models."
    )


@router.get(
    "/keys/me",
    response_model=KeyInfo,
    summary="The presented key's id and whether it is an admin key",
    description="401 for a missing or wrong key, as every authenticated route: a client "
    "checks a key here before using it.",
    responses=AUTH_ERRORS,
)
async def who_am_i(caller: CallerDep) -> KeyInfo:
    return KeyInfo(key_id=caller.key_id, admin=caller.admin)
