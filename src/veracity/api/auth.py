"""API-key authentication for inference routes (X-API-Key header)."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable

from veracity.errors import AuthenticationError

logger = logging.getLogger("veracity.auth")


def key_id(key: str) -> str:
    """A short, non-reversible name for a key, safe to log (first 8 hex of its SHA-256)."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


class ApiKeyAuth:
    """Checks a presented key against every configured key in constant time.

    Keys are held only as SHA-256 digests. Every configured key is compared on every request
    (no early exit), so timing reveals neither which key matched nor how many exist; several
    keys at once let old and new overlap during rotation.
    """

    def __init__(self, keys: Iterable[str], *, enabled: bool = True) -> None:
        self._digests = tuple(hashlib.sha256(k.encode()).digest() for k in keys)
        self.enabled = enabled
        if enabled and not self._digests:
            raise ValueError("ApiKeyAuth needs at least one key when enabled")

    def authenticate(self, presented: str | None) -> str | None:
        """Return the key id of a valid key (``None`` when auth is disabled).

        Raises:
            AuthenticationError: missing or unknown key.
        """
        if not self.enabled:
            return None
        if not presented:
            raise AuthenticationError("missing API key; send it in the X-API-Key header")
        digest = hashlib.sha256(presented.encode()).digest()
        matched = False
        for candidate in self._digests:
            matched |= hmac.compare_digest(digest, candidate)
        if not matched:
            raise AuthenticationError("invalid API key")
        return key_id(presented)
