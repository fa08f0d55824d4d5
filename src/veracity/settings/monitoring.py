"""The settings of the results store and of what reads it back to watch the model (drift):
all that ``veracity db`` and the store's readers need, without API keys or models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from veracity.drift.options import DriftOptions, DriftThresholds
from veracity.store.options import StoreOptions

ENV_PREFIX = "VERACITY_"

SETTINGS_CONFIG = SettingsConfigDict(
    env_prefix=ENV_PREFIX,
    env_file=".env",
    env_file_encoding="utf-8",
    extra="ignore",
    # An empty value (as .env.example documents optional settings) means "the default".
    env_ignore_empty=True,
    validate_default=True,
)


class StoreSettings(BaseSettings):
    """Where verdicts are kept: all that ``veracity db`` needs (no API keys)."""

    model_config = SETTINGS_CONFIG

    # The results store: every verdict recorded (VERACITY_STORE_ENABLED=false: none). By
    # default an SQLite file in data_dir; a PostgreSQL URL when replicas share one store.
    store_enabled: bool = True
    data_dir: Path = Path("var")
    database_url: SecretStr | None = None
    # Apply the store's migrations at start-up (off: run `veracity db upgrade` yourself).
    database_migrate: bool = True
    # Every store operation gives up after this long (verdicts: stored=false; reads: 503).
    store_timeout_s: Annotated[float, Field(gt=0, le=60)] = 3.0
    # The exact cache: the same bytes, model, calibration, policy and options are answered
    # from the store without inference.
    cache_enabled: bool = True
    # Keep each upload's bytes (content-addressed files under data_dir/inputs) for this
    # many days after its last upload: reviewers can see them, and `veracity
    # export-feedback` turns the reviewed ones into training data. Off by default.
    store_inputs: bool = False
    input_retention_days: Annotated[float, Field(gt=0, le=36_500)] = 30.0
    # "Seen before": each image answer lists earlier predictions of near-duplicates (256-bit
    # pHash within this many bits; re-encodes measure up to about 16, distinct pictures
    # about 90 and more).
    seen_before_enabled: bool = True
    seen_before_max_distance: Annotated[int, Field(ge=0, le=128)] = 40

    @property
    def inputs_dir(self) -> Path:
        """Where kept uploads live (VERACITY_STORE_INPUTS)."""
        return self.data_dir / "inputs"

    @property
    def store_options(self) -> StoreOptions:
        """What the results database is opened with."""
        return StoreOptions(
            url=self.database_url.get_secret_value() if self.database_url else None,
            data_dir=self.data_dir,
            timeout_s=self.store_timeout_s,
            migrate=self.database_migrate,
        )


class MonitoringSettings(StoreSettings):
    """The store, and drift monitoring over it."""

    model_config = SETTINGS_CONFIG

    # Drift monitoring (veracity.drift; needs the store and a checkpoint with a drift
    # profile): the live window each signal is scored over, the window of reviewers'
    # labels, how often the gauges are recomputed, the newest answers of a window read,
    # the PSI that counts as drift, the answers a window needs to be scored, and the floor
    # on reviewers' agreement (over at least drift_min_reviews labels).
    drift_enabled: bool = True
    drift_window_s: Annotated[float, Field(ge=60, le=30 * 86_400)] = 3600.0
    drift_review_window_s: Annotated[float, Field(ge=3600, le=365 * 86_400)] = 7 * 86_400.0
    drift_interval_s: Annotated[float, Field(ge=1, le=86_400)] = 60.0
    drift_max_answers: Annotated[int, Field(ge=10, le=1_000_000)] = 5000
    drift_psi_threshold: Annotated[float, Field(gt=0, le=10)] = 0.25
    drift_min_answers: Annotated[int, Field(ge=10, le=1_000_000)] = 100
    drift_min_agreement: Annotated[float, Field(ge=0, le=1)] = 0.8
    drift_min_reviews: Annotated[int, Field(ge=1, le=1_000_000)] = 20

    @property
    def drift_options(self) -> DriftOptions:
        return DriftOptions(
            window_s=self.drift_window_s,
            review_window_s=self.drift_review_window_s,
            interval_s=self.drift_interval_s,
            max_answers=self.drift_max_answers,
            thresholds=DriftThresholds(
                psi=self.drift_psi_threshold,
                min_answers=self.drift_min_answers,
                min_agreement=self.drift_min_agreement,
                min_reviews=self.drift_min_reviews,
            ),
        )
