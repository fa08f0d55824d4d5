"""The answer's ``provenance`` field: what the file's content credentials say of it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ProvenanceState = Literal[
    "valid", "valid_untrusted", "invalid", "remote_manifest_not_fetched", "unreadable"
]


class SignerModel(BaseModel):
    organization: str | None = Field(description="The signing certificate's organisation (O).")
    common_name: str | None = Field(description="The signing certificate's common name (CN).")


class IngredientModel(BaseModel):
    title: str | None
    format: str | None
    relationship: str | None = Field(description="parentOf, componentOf or inputTo.")
    has_credentials: bool = Field(description="The ingredient carried credentials of its own.")
    valid: bool | None = Field(
        description="Its credentials validated when it was added (null: it had none)."
    )


class ProvenanceModel(BaseModel):
    """The active C2PA manifest, validated by the CAI's library (c2pa-python). README,
    "Provenance", says how it meets the verdict."""

    present: bool = Field(description="The file carries content credentials (or points to them).")
    state: ProvenanceState | None = Field(
        default=None,
        description="valid: the signature, its certificate chain up to one of the "
        "deployment's trust anchors, and the hash binding to the content all check. "
        "valid_untrusted: all but the chain: the signer is not on the deployment's trust "
        "list (every signer is, with none configured). invalid: a check failed (edited "
        "after signing, a broken or malformed manifest); codes say which. "
        "remote_manifest_not_fetched: the file points to a manifest elsewhere, never "
        "fetched. unreadable: not read within the service's limits (codes: "
        "provenance.timeout, provenance.memory_limit, provenance.too_large, "
        "provenance.busy, provenance.format_not_supported, provenance.worker_failed; not "
        "replayed from the cache). Null when not present.",
    )
    codes: list[str] = Field(
        default_factory=list,
        description="The C2PA validation failure codes (e.g. assertion.dataHash.mismatch, "
        "signingCredential.untrusted), or the service's own code where it did not read; at "
        "most 16.",
    )
    signer: SignerModel | None = None
    claim_generator: str | None = Field(
        default=None, description="The tool that wrote the manifest, with its version."
    )
    created: str | None = Field(
        default=None,
        description="When it was signed (a trusted timestamp), else the time the manifest "
        "gives for its c2pa.created action; as the manifest writes it.",
    )
    actions: list[str] = Field(
        default_factory=list,
        description="The manifest's actions in order, each once (c2pa.created, "
        "c2pa.opened, c2pa.edited, c2pa.placed...); at most 32.",
    )
    digital_source_type: str | None = Field(
        default=None,
        description="The IPTC digital source type the manifest declares, e.g. "
        "digitalCapture (a camera), trainedAlgorithmicMedia (made by generative AI), "
        "compositeWithTrainedAlgorithmicMedia (partly).",
    )
    ingredients: list[IngredientModel] = Field(
        default_factory=list, description="The first 10 ingredients, in brief."
    )
    ingredients_total: int = 0
    remote_url: str | None = Field(
        default=None, description="Where a remote manifest is said to be (never fetched)."
    )

    @classmethod
    def absent(cls) -> ProvenanceModel:
        return cls(present=False)

    @classmethod
    def unreadable(cls, code: str) -> ProvenanceModel:
        return cls(present=True, state="unreadable", codes=[code])
