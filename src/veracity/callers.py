"""Who is calling: the authenticated key's ID and its scope."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """``key_id`` is a digest prefix of the key, never the key; None when auth is disabled.
    ``admin``: the key is one of VERACITY_ADMIN_API_KEYS (every caller is, with auth off)."""

    key_id: str | None
    admin: bool
