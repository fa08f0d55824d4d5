"""GET /webhooks/secret: the secret a key's webhooks are signed with, for its receiver.

Each key has its own (derived from VERACITY_WEBHOOK_SECRET and the key's ID), as Stripe
gives each endpoint its own, so one key's receiver cannot sign events that another key's
receiver would accept. A route rather than a field of every job answer: the secret is
fetched once when a receiver is set up, and does not travel with each job poll.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from veracity.api.deps import CallerDep, WebhookSecretDep
from veracity.api.openapi import AUTH_ERRORS, documented
from veracity.errors import NotFoundError
from veracity.jobs.webhooks import SIGNATURE_HEADER, key_secret


class WebhookSecret(BaseModel):
    secret: str = Field(
        description="The HMAC-SHA256 key of this key's webhooks: use the whole string "
        "(whsec_ included) as the key. It changes when VERACITY_WEBHOOK_SECRET or the API "
        "key changes."
    )
    key_id: str | None = Field(description="The API key it belongs to (its ID, never the key).")
    header: str = Field(description="The header that carries the signature.")
    scheme: str = Field(
        description="What the header holds: accept it when v1 matches and t is recent."
    )


NO_WEBHOOKS = "this deployment sends no webhooks (no VERACITY_WEBHOOK_SECRET to sign them)"


router = APIRouter(prefix="/webhooks", tags=["jobs"])


@router.get(
    "/secret",
    response_model=WebhookSecret,
    summary="The secret this key's webhooks are signed with",
    description="A receiver verifies the Veracity-Signature header of each webhook with "
    "it; each key has its own. 404 when the deployment sends no webhooks.",
    responses=AUTH_ERRORS
    | documented(NotFoundError, "The deployment sends no webhooks.", NO_WEBHOOKS),
)
async def get_webhook_secret(caller: CallerDep, webhook_secret: WebhookSecretDep) -> WebhookSecret:
    if webhook_secret is None:
        raise NotFoundError(NO_WEBHOOKS)
    return WebhookSecret(
        secret=key_secret(webhook_secret.get_secret_value(), caller.key_id),
        key_id=caller.key_id,
        header=SIGNATURE_HEADER,
        scheme="t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<raw body>'>",
    )
