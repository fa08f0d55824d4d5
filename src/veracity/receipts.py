"""Signed verdict receipts: a compact JWS (Ed25519, RFC 9864's ``Ed25519`` algorithm) over
what a verdict says and what it was about, checkable offline by anyone with the public key.

The signing key is an Ed25519 private key in a PEM file (a mounted Secret in Kubernetes).
Its public key, and those of earlier keys kept for verification, are published as a JWKS;
each key's ``kid`` is its RFC 7638 thumbprint, so a receipt names the key that signed it and
rotation never makes an old receipt unverifiable while its key stays published. The JOSE
work is joserfc's (on ``cryptography``); nothing here is hand-written cryptography.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey

from veracity.errors import ConfigurationError, InvalidReceiptError

ALGORITHM = "Ed25519"
TYPE = "veracity-receipt+jws"
ISSUER = "veracity"


def generate_key(out: Path) -> tuple[Path, Path]:
    """Write a new Ed25519 private key (``out``, mode 0600) and its public key beside it."""
    key = OKPKey.generate_key("Ed25519")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.touch(mode=0o600, exist_ok=False)
    out.write_bytes(key.as_pem(private=True))
    public = out.with_suffix(".pub.pem")
    public.write_bytes(key.as_pem(private=False))
    return out, public


def _load(path: Path, *, private: bool) -> OKPKey:
    try:
        key = OKPKey.import_key(path.read_bytes())
    except (OSError, ValueError, JoseError) as e:
        raise ConfigurationError(f"{path}: not a readable Ed25519 key in PEM ({e})") from e
    if key.curve_name != "Ed25519":
        raise ConfigurationError(f"{path}: an {key.curve_name} key; receipts need Ed25519")
    if private and not key.is_private:
        raise ConfigurationError(f"{path}: a public key; the signing key must be the private one")
    return key


def _public_dict(key: OKPKey) -> dict[str, Any]:
    return key.as_dict(private=False) | {
        "kid": key.thumbprint(),
        "alg": ALGORITHM,
        "use": "sig",
    }


@dataclass(frozen=True)
class ReceiptClaims:
    """What a receipt vouches for."""

    request_id: str
    prediction_id: str | None
    input_sha256: str
    model_name: str
    model_version: str
    weights_sha256: str
    calibration_version: str | None
    verdict: str
    fake_prob: float | None
    real_prob: float | None
    cached: bool
    # What the model alone said, and the content credentials that may have changed it
    # (their presence, state, declared source type and signer).
    model_verdict: str | None = None
    provenance: dict[str, Any] | None = None

    def payload(self, issued_at: int) -> dict[str, Any]:
        return {
            "iss": ISSUER,
            "iat": issued_at,
            "request_id": self.request_id,
            "prediction_id": self.prediction_id,
            "input_sha256": self.input_sha256,
            "model": {
                "name": self.model_name,
                "version": self.model_version,
                "weights_sha256": self.weights_sha256,
            },
            "calibration_version": self.calibration_version,
            "verdict": self.verdict,
            "fake_prob": self.fake_prob,
            "real_prob": self.real_prob,
            "cached": self.cached,
            "model_verdict": self.model_verdict,
            "provenance": self.provenance,
        }


class ReceiptSigner:
    def __init__(self, signing_key: Path, verify_keys: Iterable[Path] = ()) -> None:
        self._key = _load(signing_key, private=True)
        self.kid = self._key.thumbprint()
        published = {self.kid: _public_dict(self._key)}
        for path in verify_keys:
            key = _load(path, private=False)
            published.setdefault(key.thumbprint(), _public_dict(key))
        self._jwks = {"keys": list(published.values())}
        self._keyset = KeySet([OKPKey.import_key(key) for key in published.values()])

    def jwks(self) -> dict[str, Any]:
        return self._jwks

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a receipt one of the published keys signed.

        Raises:
            InvalidReceiptError: as ``verify_receipt``.
        """
        return verify_receipt(token, self._keyset)

    def sign(self, claims: ReceiptClaims) -> str:
        body = json.dumps(
            claims.payload(int(time.time())), separators=(",", ":"), sort_keys=True
        ).encode()
        header = {"alg": ALGORITHM, "kid": self.kid, "typ": TYPE}
        return jws.serialize_compact(header, body, self._key, algorithms=[ALGORITHM])


def load_public_keys(source: Path) -> KeySet:
    """Public keys from a JWKS file (as ``/.well-known/jwks.json`` serves it) or one PEM."""
    try:
        text = source.read_bytes()
    except OSError as e:
        raise ConfigurationError(f"{source}: cannot read the keys ({e.strerror})") from e
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return KeySet([_keyed(_load(source, private=False))])
    try:
        return KeySet.import_key_set(document)
    except (JoseError, ValueError, KeyError, TypeError) as e:
        raise ConfigurationError(f"{source}: not a JWKS document ({e})") from e


def _keyed(key: OKPKey) -> OKPKey:
    return OKPKey.import_key(key.as_dict(private=False) | {"kid": key.thumbprint()})


def verify_receipt(token: str, keys: KeySet) -> dict[str, Any]:
    """The receipt's claims, if a published key signed it.

    Raises:
        InvalidReceiptError: malformed, truncated, forged, or signed by an unknown key.
    """
    token = token.strip()
    if token.count(".") != 2 or len(token) > 16_384:
        raise InvalidReceiptError("not a receipt: a receipt is a compact JWS (three parts)")
    try:
        verified = jws.deserialize_compact(token, keys, algorithms=[ALGORITHM])
    except (JoseError, ValueError, KeyError, TypeError) as e:
        raise InvalidReceiptError(
            f"the receipt's signature does not verify with the given keys ({type(e).__name__})"
        ) from e
    if verified.headers().get("typ") != TYPE:
        raise InvalidReceiptError("not a veracity receipt (wrong typ header)")
    try:
        claims: dict[str, Any] = json.loads(verified.payload)
    except ValueError as e:
        raise InvalidReceiptError("the receipt's payload is not JSON") from e
    return claims


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
