"""Service configuration: environment variables (prefix ``VERACITY_``) and an optional ``.env``.

Built once by the entry point (or by a test) and passed down; nothing reads the environment
at import time. ``environment`` reads and validates the variables; ``options`` holds the small
value objects the settings build for the parts below them.
"""

from veracity.settings.environment import (
    ENV_PREFIX,
    Settings,
    StoreSettings,
    describe_validation_error,
)
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
    "RegistryOptions",
    "RunnerOptions",
    "ServiceOptions",
    "Settings",
    "StoreSettings",
    "describe_validation_error",
]
