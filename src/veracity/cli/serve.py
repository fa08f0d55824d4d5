"""``serve``: the HTTP inference service, configured from the environment."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from veracity.cli.configuration import load_settings

if TYPE_CHECKING:
    from veracity.cli.arguments import Subcommands


def add_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "serve",
        help="run the HTTP inference service",
        description="Run the service. Configuration comes from VERACITY_* environment variables "
        "and ./.env (see .env.example); --host/--port override them.",
    )
    p.add_argument("--host", default=None, help="default: VERACITY_HOST or 127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default: VERACITY_PORT or 8001")
    p.set_defaults(handler=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from veracity.settings import Settings

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = load_settings(Settings, "serve", **overrides)
    if settings is None:
        return 2
    from veracity.server import serve

    return serve(settings)
