"""What runs inside a provenance worker process: the CAI's library over one file's bytes,
boiled down to the small, bounded summary an answer reports.

Only worker processes import ``c2pa`` (lazily, in ``read_credentials``): the native
library parses attacker-controlled bytes, so it runs where a time limit can kill it and an
address-space limit caps it (``limit_memory``), never in the server process. Nothing here
fetches: remote manifests and OCSP are off in the library's settings and no network host
is allowed.
"""

from __future__ import annotations

import re
import resource
from typing import Any

IPTC_SOURCE_TYPES = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# The IPTC source types that declare generative AI (the verdict's rule reads these too).
AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"})
# Bounds on what a summary carries, whatever the manifest holds.
MAX_ACTIONS = 32
MAX_CODES = 16
MAX_INGREDIENTS = 10
MAX_TEXT = 200
MAX_URL = 2048
_STATES = {"Trusted": "valid", "Valid": "valid_untrusted", "Invalid": "invalid"}
_REMOTE_URL = re.compile(r"from url (\S+)")
_KIND = re.compile(r"[A-Za-z]{1,40}")


def limit_memory(max_bytes: int) -> None:
    """An allocation past ``max_bytes`` of address space fails from now on (MemoryError in
    Python, an abort in the native library), whatever a manifest claims."""
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))


def prepare_worker(max_bytes: int) -> None:
    """The worker's initializer: the library loaded before any read's time limit runs, then
    the memory limit."""
    import c2pa  # noqa: F401 (loaded here, once per worker)

    limit_memory(max_bytes)


def library_settings(trust_anchors: str | None) -> dict[str, Any]:
    """The c2pa settings every read uses: no network, ever; trust checked against the
    deployment's anchors only (the library's own defaults never decide ``valid``)."""
    trusted = trust_anchors is not None
    settings: dict[str, Any] = {
        "verify": {
            "verify_after_reading": True,
            "verify_trust": trusted,
            "verify_timestamp_trust": trusted,
            "remote_manifest_fetch": False,
            "ocsp_fetch": False,
        },
        # No host may be reached; CAWG identity assertions are not decoded, because their
        # resolution (did:web) does not honour the allowed hosts (c2pa-rs issue 1645).
        "core": {"allowed_network_hosts": [], "decode_identity_assertions": False},
    }
    if trusted:
        settings["trust"] = {"trust_anchors": trust_anchors}
    return settings


def read_credentials(data: bytes, media_type: str, trust_anchors: str | None) -> dict[str, Any]:
    """The summary of ``data``'s content credentials (the fields of ``ProvenanceModel``)."""
    import io

    import c2pa

    try:
        context = c2pa.Context.from_dict(library_settings(trust_anchors))
        with c2pa.Reader(media_type, io.BytesIO(data), context=context) as reader:
            manifest = reader.get_active_manifest() or {}
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
    except c2pa.C2paError.ManifestNotFound:
        return {"present": False}
    except c2pa.C2paError as e:
        return _failed(_error_kind(e), str(e))
    except MemoryError:
        return unreadable("provenance.memory_limit")
    except Exception:
        # The binding's own failures (a KeyError on an odd store): the file stays unread,
        # and the worker lives on for the next one.
        return unreadable("provenance.worker_failed")
    return summarise(manifest, state, results)


def unreadable(code: str) -> dict[str, Any]:
    return {"present": True, "state": "unreadable", "codes": [code]}


def _error_kind(error: Exception) -> str:
    """The library's error type: its class, or the prefix of its message where the binding
    has no class for it (remote manifests are reported as "Remote: ...")."""
    name = type(error).__name__.removeprefix("_C2pa")
    if name == "C2paError":
        prefix = str(error).split(":", 1)[0]
        name = prefix if _KIND.fullmatch(prefix) else "Other"
    return name


def _failed(kind: str, message: str) -> dict[str, Any]:
    if kind in ("Remote", "RemoteManifest"):
        found = _REMOTE_URL.search(message)
        return {
            "present": True,
            "state": "remote_manifest_not_fetched",
            "codes": ["provenance.remote_manifest_not_fetched"],
            "remote_url": found.group(1)[:MAX_URL] if found else None,
        }
    if kind == "NotSupported":
        return unreadable("provenance.format_not_supported")
    # A store the library cannot parse or check (malformed, truncated, inconsistent): the
    # credential fails validation, as a tampered one does.
    return {"present": True, "state": "invalid", "codes": [f"c2pa.{kind[:1].lower()}{kind[1:]}"]}


def _text(value: object) -> str | None:
    return value[:MAX_TEXT] if isinstance(value, str) and value else None


def _failure_codes(results: dict[str, Any]) -> list[str]:
    active = results.get("activeManifest") or {}
    codes = [item.get("code") for item in active.get("failure") or [] if isinstance(item, dict)]
    return list(dict.fromkeys(c for c in codes if isinstance(c, str)))[:MAX_CODES]


def _actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for assertion in manifest.get("assertions") or []:
        label = assertion.get("label", "") if isinstance(assertion, dict) else ""
        if label in ("c2pa.actions", "c2pa.actions.v2"):
            data = assertion.get("data") or {}
            found.extend(a for a in data.get("actions") or [] if isinstance(a, dict))
    return found


def _source_type(actions: list[dict[str, Any]]) -> str | None:
    """The declared source type: an AI one if any action declares it (a capture edited
    with generative fill is then composite), else the first declared."""
    declared = [
        source.removeprefix(IPTC_SOURCE_TYPES)[:MAX_TEXT]
        for action in actions
        if isinstance(source := action.get("digitalSourceType"), str) and source
    ]
    generated = [source for source in declared if source in AI_SOURCE_TYPES]
    chosen = generated or declared
    return chosen[0] if chosen else None


def _generator(manifest: dict[str, Any]) -> str | None:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        name, version = _text(info[0].get("name")), _text(info[0].get("version"))
        if name:
            return f"{name} {version}" if version else name
    return _text(manifest.get("claim_generator"))


def _ingredient(item: dict[str, Any]) -> dict[str, Any]:
    credentials = isinstance(item.get("active_manifest"), str)
    failed = _failure_codes(item.get("validation_results") or {})
    failed = [c for c in failed if c != "signingCredential.untrusted"]
    return {
        "title": _text(item.get("title")),
        "format": _text(item.get("format")),
        "relationship": _text(item.get("relationship")),
        "has_credentials": credentials,
        "valid": (not failed) if credentials else None,
    }


def summarise(
    manifest: dict[str, Any], state: str | None, results: dict[str, Any]
) -> dict[str, Any]:
    """What an answer says of the active manifest, bounded whatever its size."""
    actions = _actions(manifest)
    signature = manifest.get("signature_info") or {}
    ingredients = [i for i in manifest.get("ingredients") or [] if isinstance(i, dict)]
    created = _text(signature.get("time")) or next(
        (_text(a.get("when")) for a in actions if a.get("action") == "c2pa.created"), None
    )
    return {
        "present": True,
        "state": _STATES.get(state or "", "invalid"),
        "codes": _failure_codes(results),
        "signer": {
            "organization": _text(signature.get("issuer")),
            "common_name": _text(signature.get("common_name")),
        }
        if signature
        else None,
        "claim_generator": _generator(manifest),
        "created": created,
        "actions": list(dict.fromkeys(str(a.get("action"))[:MAX_TEXT] for a in actions))[
            :MAX_ACTIONS
        ],
        "digital_source_type": _source_type(actions),
        "ingredients": [_ingredient(i) for i in ingredients[:MAX_INGREDIENTS]],
        "ingredients_total": len(ingredients),
    }
