"""Service configuration: environment variables (prefix ``VERACITY_``) and an optional ``.env``.

Built once by the entry point (or by a test) and passed down; nothing reads the environment
at import time. ``environment`` reads and validates the variables (``monitoring``: the store's
and drift's, which the light commands read alone); ``options`` holds the small
value objects the settings build for the parts below them.
"""

from veracity.settings.environment import Settings, describe_validation_error
from veracity.settings.monitoring import ENV_PREFIX, MonitoringSettings, StoreSettings
from veracity.settings.options import (
    AdmissionLimits,
    ImageLimits,
    RegistryOptions,
    RunnerOptions,
    ServiceOptions,
)

__all__ = [
    "ENV_PREFIX",
    "AdmissionLimits",
    "ImageLimits",
    "MonitoringSettings",
    "RegistryOptions",
    "RunnerOptions",
    "ServiceOptions",
    "Settings",
    "StoreSettings",
    "describe_validation_error",
]
