"""What a person should do about each reason an answer gives (the README's table, "How to
read a verdict", as data): sent beside every reason as ``action``, so a reviewer's screen
and an API client read the same advice."""

from __future__ import annotations

from veracity.verdicts.quality import ReasonCode

REASON_ACTIONS: dict[ReasonCode, str] = {
    "out_of_distribution": "Use a model trained on this kind of media; its fake_prob does "
    "not apply here.",
    "near_threshold": "A person decides, or the deployment moves its operating points.",
    "low_resolution": "Send the original file, not a thumbnail or a downscaled copy.",
    "heavy_compression": "Send a less compressed copy (the original, not a re-share).",
    "no_content": "Nothing to analyse: the image is nearly uniform.",
    "unstable": "Treat it as unknown: the answer would not survive the next re-share.",
    "no_face": "Send media with a visible face, or use a whole-image model.",
    "no_frames": "Check that the file plays; send it again, or another copy.",
    "too_short": "Send a longer clip (at least 2 frames, 0.1 s).",
    "too_many_inconclusive_frames": "Read the frames' reasons (the message names the gate) "
    "and send a better copy of the video.",
    "suspicious_segments": "A person looks at the named segments: part of the clip may be "
    "manipulated.",
    "doubtful_stretch": "A person looks at the named stretch: the model half-sees something there.",
    "temporal_contrast": "Treat the first segment as edited: the same shot looks "
    "manipulated there and not around it (read segments[0].step).",
    "declared_ai_generated": "Label it as AI-generated: its maker's signed credentials say "
    "so (read provenance.signer; model_verdict is what the model alone saw).",
    "provenance_invalid": "Ask for the original file: this copy was changed after it was "
    "signed, or its credentials are damaged (read provenance.codes).",
}
