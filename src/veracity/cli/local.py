"""``init-env``: what a first local run needs in ``.env`` (`make run` calls it).

A newcomer's service starts with an API key and a receipt signing key, so the first answer
already carries a signed receipt; each is written only where ``.env`` does not set one, so
a deployment's own configuration is never changed. Deployments provide both through their
secrets (DEPLOYMENT.md).
"""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from veracity.cli.arguments import Subcommands

# Any of these in .env means the deployment chose how callers authenticate.
_KEY_SETTINGS = ("VERACITY_API_KEYS", "MODEL_API_KEY", "VERACITY_ADMIN_API_KEYS")
_AUTH_OFF = "VERACITY_AUTH_DISABLED"
_SIGNING_KEY = "VERACITY_RECEIPT_SIGNING_KEY"


def add_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "init-env",
        help="create or complete .env for a local run: an API key and a receipt signing key",
        description="Adds VERACITY_API_KEYS (a new random key) and "
        "VERACITY_RECEIPT_SIGNING_KEY (a new Ed25519 key, mode 0600) to --env where it sets "
        "neither; never changes a setting that is there.",
    )
    p.add_argument("--env", type=Path, default=Path(".env"), help="default: %(default)s")
    p.add_argument(
        "--receipt-key",
        type=Path,
        default=Path("var/keys/receipts.pem"),
        help="where a new signing key goes (default: %(default)s, outside the tracked files)",
    )
    p.set_defaults(handler=_cmd_init_env)


def _settings_in(env: Path) -> dict[str, str]:
    """The settings ``env`` gives a value (as the dotenv reader sees them: ``export NAME=``
    allowed, comments and empty values not settings)."""
    if not env.exists():
        return {}
    found = {}
    for line in env.read_text().splitlines():
        name, sep, value = line.strip().removeprefix("export ").partition("=")
        value = value.strip().strip("'\"")
        if sep and value and not name.startswith("#"):
            found[name.strip()] = value
    return found


def _cmd_init_env(args: argparse.Namespace) -> int:
    from veracity.receipts import generate_key

    env: Path = args.env
    present = _settings_in(env)
    auth_off = present.get(_AUTH_OFF, "").lower() in ("1", "true", "yes", "on")
    added: list[str] = []
    if not auth_off and not present.keys() & set(_KEY_SETTINGS):
        added.append(f"VERACITY_API_KEYS={secrets.token_urlsafe(32)}")
        print(f"{env}: a new API key (VERACITY_API_KEYS)")
    if _SIGNING_KEY not in present:
        key: Path = args.receipt_key
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            generate_key(key)
        added.append(f"{_SIGNING_KEY}={key}")
        print(f"{env}: answers carry signed receipts (signing key {key}, mode 0600)")
    if added:
        existing = env.read_bytes() if env.exists() else b""
        # Owner-only, created so or made so: it now holds secrets.
        fd = os.open(env, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "a") as out:
            if not existing:
                out.write("# Created by `veracity init-env`; see .env.example for every setting.\n")
            elif not existing.endswith(b"\n"):
                out.write("\n")
            out.write("".join(f"{line}\n" for line in added))
    return 0
