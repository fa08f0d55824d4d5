"""``healthcheck``: the container's HEALTHCHECK, with nothing but the standard library."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from veracity.cli.arguments import Subcommands


def add_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "healthcheck",
        help="exit 0 if the local service's /health answers 200 (container HEALTHCHECK)",
    )
    p.add_argument("--port", type=int, default=None, help="default: VERACITY_PORT or 8001")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds (default: %(default)s)")
    p.set_defaults(handler=_cmd_healthcheck)


def _cmd_healthcheck(args: argparse.Namespace) -> int:
    import os
    import urllib.error
    import urllib.request

    # The port of the server in this container; read at run time, never at import.
    port = args.port or int(os.environ.get("VERACITY_PORT", "8001"))
    url = f"http://127.0.0.1:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            healthy = response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        healthy = False
    return 0 if healthy else 1
