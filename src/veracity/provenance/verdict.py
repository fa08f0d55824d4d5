"""How a content credential meets the model's verdict (README, "Provenance").

The file's own signed statement and the model's reading are two kinds of evidence, and
only a statement against interest overrides the model: a valid credential that declares
the content AI-generated makes it ``fake`` whatever the model says (its maker says so); a
credential that fails validation makes a ``real`` at most ``inconclusive`` (someone
changed the file after it was signed, or forged the credential). A valid credential from
a camera never turns a ``fake`` into ``real``: a signature says who signed, not that the
pixels are true, and cameras' keys leak.
"""

from __future__ import annotations

from typing import Literal

from veracity.provenance.report import ProvenanceModel
from veracity.provenance.worker import AI_SOURCE_TYPES
from veracity.verdicts.quality import Reason

VerdictWord = Literal["real", "fake", "inconclusive"]


def with_provenance(
    model_verdict: VerdictWord, provenance: ProvenanceModel | None
) -> tuple[VerdictWord, list[Reason]]:
    """The answer's verdict and the reasons the credential adds to the model's."""
    if provenance is None or not provenance.present:
        return model_verdict, []
    if provenance.state in ("valid", "valid_untrusted") and (
        provenance.digital_source_type in AI_SOURCE_TYPES
    ):
        signer = provenance.signer.organization if provenance.signer else None
        return "fake", [
            Reason(
                "declared_ai_generated",
                f"the file's content credentials, signed by {signer or 'an unnamed signer'}, "
                f"declare it {provenance.digital_source_type} (made by generative AI).",
            )
        ]
    if provenance.state == "invalid":
        codes = ", ".join(provenance.codes) or "no code given"
        reason = Reason(
            "provenance_invalid",
            "the file's content credentials fail validation "
            f"({codes}): it was changed after signing, or the credentials are broken.",
        )
        return ("inconclusive" if model_verdict == "real" else model_verdict), [reason]
    return model_verdict, []
