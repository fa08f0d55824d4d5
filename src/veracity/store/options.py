"""What the store needs from the configuration, as one small value ``Settings`` builds.

Kept apart from the engine code so that reading the settings loads no database driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class StoreOptions:
    # None: the SQLite file in data_dir. Kept out of repr: it may carry a password.
    url: str | None = field(repr=False)
    data_dir: Path
    # Every store operation gives up after this long.
    timeout_s: float
    # Apply the migrations at start-up (off: check that someone did).
    migrate: bool = True
