"""Provenance without HTTP: how a credential meets the model's verdict, the bounded summary
of a manifest, the worker's limits, and the trust-list setting."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from pathlib import Path

import pytest
from pebble import ProcessPool
from pydantic import ValidationError

from tests import c2pafiles as c2
from veracity.provenance.options import ProvenanceOptions
from veracity.provenance.reader import CredentialReader, carries_credentials
from veracity.provenance.report import ProvenanceModel, SignerModel
from veracity.provenance.verdict import with_provenance
from veracity.provenance.worker import (
    MAX_ACTIONS,
    MAX_INGREDIENTS,
    MAX_TEXT,
    library_settings,
    limit_memory,
    summarise,
)
from veracity.settings import Settings, describe_validation_error


def credential(state: str, source: str | None = None) -> ProvenanceModel:
    return ProvenanceModel(
        present=True,
        state=state,
        digital_source_type=source,
        signer=SignerModel(organization="Example Camera Co", common_name="Test Camera"),
    )


@pytest.mark.parametrize(
    ("model", "provenance", "verdict", "codes"),
    [
        # No credential, or one that says nothing against the content: the model decides.
        ("fake", None, "fake", []),
        ("real", ProvenanceModel.absent(), "real", []),
        ("real", credential("valid", "digitalCapture"), "real", []),
        # A camera's valid signature never turns the model's fake into real.
        ("fake", credential("valid", "digitalCapture"), "fake", []),
        ("real", ProvenanceModel.unreadable("provenance.timeout"), "real", []),
        ("real", credential("remote_manifest_not_fetched"), "real", []),
        # A valid declaration of AI generation: fake whatever the model says.
        ("real", credential("valid", "trainedAlgorithmicMedia"), "fake", ["declared_ai_generated"]),
        (
            "inconclusive",
            credential("valid_untrusted", "compositeWithTrainedAlgorithmicMedia"),
            "fake",
            ["declared_ai_generated"],
        ),
        # A credential that fails validation: at least inconclusive, and never believed.
        ("real", credential("invalid", "digitalCapture"), "inconclusive", ["provenance_invalid"]),
        ("fake", credential("invalid"), "fake", ["provenance_invalid"]),
        (
            "real",
            credential("invalid", "trainedAlgorithmicMedia"),
            "inconclusive",
            ["provenance_invalid"],
        ),
    ],
)
def test_how_a_credential_meets_the_models_verdict(model, provenance, verdict, codes) -> None:
    answered, reasons = with_provenance(model, provenance)
    assert answered == verdict
    assert [r.code for r in reasons] == codes


def test_a_summary_is_bounded_whatever_the_manifest_holds() -> None:
    actions = [{"action": f"org.test.action{i}"} for i in range(500)]
    manifest = {
        "claim_generator_info": [{"name": "x" * 10_000, "version": "1"}],
        "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": actions}}],
        "ingredients": [{"title": str(i), "active_manifest": "urn:x"} for i in range(1000)],
        "signature_info": {"issuer": "O" * 5000, "common_name": "CN"},
    }
    failures = [{"code": f"code.{i}"} for i in range(100)]
    summary = summarise(manifest, "Invalid", {"activeManifest": {"failure": failures}})
    model = ProvenanceModel(**summary)
    assert model.state == "invalid"
    assert len(model.actions) == MAX_ACTIONS
    assert len(model.ingredients) == MAX_INGREDIENTS
    assert model.ingredients_total == 1000
    assert len(model.codes) == 16
    assert model.signer is not None
    assert len(model.signer.organization or "") == MAX_TEXT
    assert len(model.claim_generator or "") <= MAX_TEXT + 3


def test_the_library_never_fetches_and_trusts_only_the_deployments_anchors() -> None:
    untrusted = library_settings(None)
    assert untrusted["verify"]["remote_manifest_fetch"] is False
    assert untrusted["verify"]["ocsp_fetch"] is False
    assert untrusted["core"]["allowed_network_hosts"] == []
    assert untrusted["verify"]["verify_trust"] is False
    assert "trust" not in untrusted
    trusted = library_settings("PEM")
    assert trusted["verify"]["verify_trust"] is True
    assert trusted["trust"] == {"trust_anchors": "PEM"}


def test_files_without_a_marker_never_reach_a_worker() -> None:
    assert not carries_credentials(c2.photo())
    assert carries_credentials(c2.sign(c2.photo()))
    reader = CredentialReader(ProvenanceOptions())
    assert asyncio.run(reader.read(c2.photo(), "image/jpeg")) == ProvenanceModel.absent()
    assert reader._pool is None  # no worker was started for it
    disabled = CredentialReader(ProvenanceOptions(enabled=False))
    assert asyncio.run(disabled.read(c2.sign(c2.photo()), "image/jpeg")) is None


def test_reads_beyond_the_pending_bound_are_not_queued() -> None:
    reader = CredentialReader(ProvenanceOptions(max_pending=0))
    answer = asyncio.run(reader.read(c2.sign(c2.photo()), "image/jpeg"))
    assert answer == ProvenanceModel.unreadable("provenance.busy")
    assert reader._pool is None


def test_a_worker_cannot_allocate_past_its_memory_limit() -> None:
    pool = ProcessPool(
        max_workers=1,
        initializer=limit_memory,
        initargs=[256 * 2**20],
        context=multiprocessing.get_context("spawn"),
    )
    try:
        with pytest.raises(MemoryError):
            pool.schedule(bytearray, args=[2**30], timeout=30).result()
        # The same worker goes on with work inside the limit.
        assert len(pool.schedule(bytearray, args=[2**20], timeout=30).result()) == 2**20
    finally:
        pool.stop()
        pool.join(timeout=10)


def test_a_trust_list_that_is_not_pem_stops_the_service_at_start_up(tmp_path: Path) -> None:
    bad = tmp_path / "anchors.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None, auth_disabled=True, provenance_trust_anchors=str(bad))
    (line,) = describe_validation_error(raised.value)
    assert line.startswith("VERACITY_PROVENANCE_TRUST_ANCHORS: ")
    assert "anchors.pem" in line
    good = tmp_path / "good.pem"
    good.write_text(c2.authority().root_pem)
    settings = Settings(_env_file=None, auth_disabled=True, provenance_trust_anchors=f"{good}")
    options = settings.provenance_options
    assert options.trust_anchors is not None
    assert "BEGIN CERTIFICATE" in options.trust_anchors
    assert options.fingerprint not in ("off", "untrusted")


def test_an_ai_declaration_on_a_later_action_is_the_one_reported() -> None:
    actions = [
        {"action": "c2pa.created", "digitalSourceType": c2.CAMERA},
        {
            "action": "c2pa.edited",
            "digitalSourceType": c2.IPTC + "compositeWithTrainedAlgorithmicMedia",
        },
    ]
    manifest = {"assertions": [{"label": "c2pa.actions.v2", "data": {"actions": actions}}]}
    summary = ProvenanceModel(**summarise(manifest, "Valid", {}))
    assert summary.digital_source_type == "compositeWithTrainedAlgorithmicMedia"
    assert with_provenance("real", summary)[0] == "fake"


def test_a_file_too_large_for_a_workers_memory_is_not_sent_to_one() -> None:
    reader = CredentialReader(ProvenanceOptions(max_memory_bytes=128 * 2**20))
    assert reader.max_payload_bytes == (128 - 96) * 2**20 // 3
    padded = c2.sign(c2.photo()) + bytes(reader.max_payload_bytes)
    assert asyncio.run(reader.read(padded, "image/jpeg")) == ProvenanceModel.unreadable(
        "provenance.too_large"
    )
    assert reader._pool is None


def test_a_pool_whose_worker_died_between_reads_is_replaced() -> None:
    reader = CredentialReader(ProvenanceOptions())
    signed = c2.sign(c2.photo())

    async def read_three_times() -> list[ProvenanceModel | None]:
        found = [await reader.read(signed, "image/jpeg")]
        # A worker killed while idle (the kernel's OOM killer, an operator): pebble
        # replaces it, or gives the pool up; either way the next reads are answered.
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGKILL)
        found.append(await reader.read(signed, "image/jpeg"))
        found.append(await reader.read(signed, "image/jpeg"))
        return found

    try:
        first, second, third = asyncio.run(read_three_times())
    finally:
        reader.close()
    assert first is not None
    assert first.state == "valid_untrusted"
    assert second is not None
    assert second.state in ("valid_untrusted", "unreadable")
    assert third is not None
    assert third.state == "valid_untrusted"
