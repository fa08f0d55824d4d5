"""Verdict receipts: the keys that verify them (JWKS), and a check for clients without the CLI."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from veracity.api.deps import SignerDep
from veracity.api.openapi import INVALID_BODY, INVALID_RECEIPT, NO_SUCH_PREDICTION
from veracity.api.schemas import ReceiptCheck, ReceiptToCheck
from veracity.errors import NotFoundError
from veracity.receipts import ReceiptSigner

router = APIRouter()


def _receipts_on(signer: ReceiptSigner | None) -> ReceiptSigner:
    if signer is None:
        raise NotFoundError("this deployment signs no receipts (no VERACITY_RECEIPT_SIGNING_KEY)")
    return signer


@router.get(
    "/.well-known/jwks.json",
    summary="The public keys that verify verdict receipts (JWKS)",
    description="The current signing key and earlier ones kept for verification "
    "(VERACITY_RECEIPT_VERIFY_KEYS); a receipt's `kid` names its key. 404 when the "
    "deployment signs no receipts.",
    responses=NO_SUCH_PREDICTION,
)
async def jwks(signer: SignerDep) -> dict[str, Any]:
    return _receipts_on(signer).jwks()


@router.post(
    "/receipts/verify",
    response_model=ReceiptCheck,
    summary="Check a verdict receipt against this deployment's published keys",
    description="The same check as `veracity verify-receipt`, for clients without the "
    "CLI: 200 with the claims when a published key signed it (and, given "
    "`input_sha256`, whether it is about those bytes); 400 `invalid_receipt` otherwise.",
    responses=INVALID_RECEIPT | NO_SUCH_PREDICTION | INVALID_BODY,
)
async def verify(body: ReceiptToCheck, signer: SignerDep) -> ReceiptCheck:
    claims = _receipts_on(signer).verify(body.receipt)
    same = None if body.input_sha256 is None else claims.get("input_sha256") == body.input_sha256
    return ReceiptCheck(valid=True, claims=claims, matches_input=same)
