"""From a calibrated probability and the gates' reasons to ``real``, ``fake`` or
``inconclusive``.

Operating points: ``fake_prob >= fake_threshold`` is ``fake``, ``fake_prob <=
real_threshold`` is ``real``, and the band between is ``inconclusive`` / ``near_threshold``.
Any gate reason (out of distribution, low resolution, heavy compression, no content,
unstable) makes the verdict ``inconclusive`` whatever the probability: the probability
describes inputs like the calibration data, and these inputs are not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from veracity.errors import ConfigurationError
from veracity.verdicts.quality import InputQuality, QualityLimits, Reason

VerdictLabel = Literal["real", "fake", "inconclusive"]


@dataclass(frozen=True)
class Thresholds:
    real_threshold: float = 0.25
    fake_threshold: float = 0.75

    def __post_init__(self) -> None:
        if not 0.0 <= self.real_threshold <= 0.5 <= self.fake_threshold <= 1.0:
            raise ConfigurationError(
                "thresholds must satisfy 0 <= real_threshold <= 0.5 <= fake_threshold <= 1, "
                f"got {self.real_threshold} and {self.fake_threshold}"
            )

    def classify(self, fake_prob: float) -> VerdictLabel:
        if fake_prob >= self.fake_threshold:
            return "fake"
        if fake_prob <= self.real_threshold:
            return "real"
        return "inconclusive"


@dataclass(frozen=True)
class VerdictPolicy:
    """Per-deployment operating points and gates (built from Settings or CLI flags)."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    quality: QualityLimits = field(default_factory=QualityLimits)
    robustness_check: bool = False  # the default when a request does not say


@dataclass(frozen=True)
class Stability:
    """The robustness self-check: the same image re-encoded and resized, re-scored."""

    score: float  # 1 - the largest change in fake_prob across the variants
    variants: dict[str, float]  # variant name -> its calibrated fake_prob
    flipped: tuple[str, ...]  # variants whose verdict is the opposite class


@dataclass(frozen=True)
class Verdict:
    fake_prob: float
    real_prob: float
    verdict: VerdictLabel
    reasons: tuple[Reason, ...]
    ood_score: float | None  # distance / threshold; > 1 is out of distribution
    quality: InputQuality
    stability: Stability | None = None
    faces: int | None = None  # faces found (face checkpoints); None: the whole image is read

    @property
    def label(self) -> Literal["real", "fake"]:
        """The more probable class (the pre-verdict contract's ``label``)."""
        return "fake" if self.fake_prob > self.real_prob else "real"


def decide(
    fake_prob: float,
    *,
    thresholds: Thresholds,
    gate_reasons: list[Reason],
    ood_score: float | None,
    quality: InputQuality,
    stability: Stability | None = None,
) -> Verdict:
    reasons = list(gate_reasons)
    if ood_score is not None and ood_score > 1.0:
        reasons.insert(
            0,
            Reason(
                "out_of_distribution",
                f"the image is unlike anything this model was trained on (distance "
                f"{ood_score:.2f}x the largest seen on its validation data); its probability "
                "does not apply here.",
            ),
        )
    if stability is not None and stability.flipped:
        reasons.append(
            Reason(
                "unstable",
                "the verdict changes when the image is "
                + " or ".join(_VARIANT_WORDS.get(v, v) for v in stability.flipped)
                + f" (stability {stability.score:.2f}); it rests on traces too fragile "
                "to trust.",
            )
        )
    by_probability = thresholds.classify(fake_prob)
    if by_probability == "inconclusive":
        reasons.append(
            Reason(
                "near_threshold",
                f"fake_prob {fake_prob:.3f} lies between the operating points "
                f"{thresholds.real_threshold:g} (real) and {thresholds.fake_threshold:g} "
                "(fake).",
            )
        )
    verdict: VerdictLabel = "inconclusive" if reasons else by_probability
    return Verdict(
        fake_prob=fake_prob,
        real_prob=1.0 - fake_prob,
        verdict=verdict,
        reasons=tuple(reasons),
        ood_score=ood_score,
        quality=quality,
        stability=stability,
    )


_VARIANT_WORDS = {"jpeg75": "re-encoded as JPEG at quality 75", "half_size": "halved in size"}
