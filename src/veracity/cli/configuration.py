"""Settings for the commands that read them, checked before anything else runs."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

S = TypeVar("S", bound="BaseSettings")


def load_settings(kind: type[S], command: str, **overrides: Any) -> S | None:
    """Settings from the environment, or None after printing one line per invalid one."""
    from pydantic import ValidationError

    from veracity.settings import describe_validation_error

    try:
        return kind(**overrides)
    except ValidationError as e:
        for line in describe_validation_error(e):
            print(f"veracity {command}: invalid configuration: {line}", file=sys.stderr)
        return None
