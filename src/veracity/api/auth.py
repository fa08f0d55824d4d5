"""API-key authentication for inference routes (X-API-Key header)."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable

from starlette.datastructures import Headers, QueryParams

from veracity.callers import Caller
from veracity.errors import AuthenticationError

logger = logging.getLogger("veracity.auth")

HEADER = "x-api-key"
# Query parameters clients use for keys. A key in a URL is kept by proxies, browser history
# and access logs, so such a request is refused even when the header is right too.
_KEY_QUERY_PARAMS = frozenset(
    {"api_key", "apikey", "api-key", "x-api-key", "key", "token", "access_token"}
)


def key_id(key: str) -> str:
    """A short, non-reversible name for a key, safe to log (first 8 hex of its SHA-256)."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


class ApiKeyAuth:
    """Checks a presented key against every configured key in constant time.

    Keys are held only as SHA-256 digests. Every configured key is compared on every request
    (no early exit), so timing reveals neither which key matched nor how many exist; several
    keys at once let old and new overlap during rotation. Admin keys are keys too, with the
    admin scope (managing every key's stored predictions).
    """

    def __init__(
        self, keys: Iterable[str], *, admin_keys: Iterable[str] = (), enabled: bool = True
    ) -> None:
        admins = {hashlib.sha256(k.encode()).digest() for k in admin_keys}
        digests = [hashlib.sha256(k.encode()).digest() for k in keys]
        self._keys = tuple((d, d in admins) for d in dict.fromkeys([*digests, *admins]))
        self.enabled = enabled
        if enabled and not self._keys:
            raise ValueError("ApiKeyAuth needs at least one key when enabled")

    def authenticate_request(self, headers: Headers, query: QueryParams) -> Caller:
        """Find the key where it belongs (one X-API-Key header) and check it.

        Raises:
            AuthenticationError: missing, wrong, duplicated, or misplaced (query string,
                ``Authorization``) key.
        """
        if not self.enabled:
            return Caller(key_id=None, admin=True)
        if any(name.lower() in _KEY_QUERY_PARAMS for name in query):
            raise AuthenticationError(
                "API keys must not be sent in the URL, where proxies and logs keep them; "
                "send the key in the X-API-Key header, and rotate the exposed key"
            )
        values = headers.getlist(HEADER)
        if len(values) > 1:
            raise AuthenticationError("send exactly one X-API-Key header")
        if not values and "authorization" in headers:
            raise AuthenticationError(
                "send the API key in the X-API-Key header, not in Authorization"
            )
        return self.identify(values[0] if values else None)

    def authenticate(self, presented: str | None) -> str | None:
        """Return the key id of a valid key (``None`` when auth is disabled).

        Raises:
            AuthenticationError: missing or unknown key.
        """
        return self.identify(presented).key_id

    def identify(self, presented: str | None) -> Caller:
        """The caller a presented key stands for.

        Raises:
            AuthenticationError: missing or unknown key.
        """
        if not self.enabled:
            return Caller(key_id=None, admin=True)
        if not presented:
            raise AuthenticationError("missing API key; send it in the X-API-Key header")
        digest = hashlib.sha256(presented.encode()).digest()
        matched = admin = False
        for candidate, is_admin in self._keys:
            same = hmac.compare_digest(digest, candidate)
            matched |= same
            admin |= same and is_admin
        if not matched:
            raise AuthenticationError("invalid API key")
        return Caller(key_id=key_id(presented), admin=admin)
