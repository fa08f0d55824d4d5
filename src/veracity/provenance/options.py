"""How this deployment reads content credentials (built by the settings, torch- and c2pa-free)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509


@dataclass(frozen=True)
class ProvenanceOptions:
    """``trust_anchors``: the PEM bundle of roots a signer must chain to for ``valid``
    (None: every sound signature is ``valid_untrusted``)."""

    enabled: bool = True
    trust_anchors: str | None = None
    timeout_s: float = 5.0
    max_memory_bytes: int = 512 * 2**20
    workers: int = 1
    # Reads waiting for a worker beyond this many are not made: the answer says so
    # (``unreadable`` / ``provenance.busy``) instead of queueing without bound.
    max_pending: int = 16

    @property
    def fingerprint(self) -> str:
        """What of these options shapes an answer: in the exact-cache key, so that answers
        judged against another trust list are not replayed."""
        if not self.enabled:
            return "off"
        if self.trust_anchors is None:
            return "untrusted"
        return hashlib.sha256(self.trust_anchors.encode()).hexdigest()[:16]


def load_trust_anchors(paths: list[Path]) -> str | None:
    """The PEM bundles at ``paths`` as one (None for none).

    Raises:
        ValueError: a file that cannot be read or holds no X.509 certificate in PEM, so a
            mistyped trust list stops the service at start-up instead of trusting no one.
    """
    bundles = []
    for path in paths:
        try:
            text = path.read_text(encoding="ascii")
            certificates = x509.load_pem_x509_certificates(text.encode())
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: cannot read the trust anchors ({e})") from e
        except ValueError as e:
            raise ValueError(f"{path}: not a PEM bundle of X.509 certificates ({e})") from e
        if not certificates:
            raise ValueError(f"{path}: no certificate in it")
        bundles.append(text.strip() + "\n")
    return "".join(bundles) or None
