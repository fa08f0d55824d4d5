"""``models``: list and manage a running service's models through its admin API."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from veracity.cli.arguments import Subcommands


def add_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "models",
        help="list and manage a running service's models (load, unload, promote, rollback, "
        "traffic); an admin key for changes",
    )
    p.add_argument(
        "--url", default="http://127.0.0.1:8001", help="the service (default: %(default)s)"
    )
    p.add_argument(
        "--api-key", default=None, help="default: the VERACITY_ADMIN_KEY environment variable"
    )
    p.add_argument("--json", action="store_true", help="print the service's answer as JSON")
    p.add_argument(
        "--if-revision",
        type=int,
        default=None,
        metavar="N",
        help="change only if the models are still at revision N (GET /models' revision); "
        "else the service answers 409 revision_conflict and changes nothing",
    )
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every model, its versions, state, roles and memory")
    for name, text in (
        ("load", "load and warm up a version without sending it traffic"),
        ("unload", "unload a version that takes no traffic"),
        ("promote", "serve a version (loaded and warmed up first)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("name")
        action.add_argument("version")
    action = actions.add_parser("rollback", help="serve the previous version again")
    action.add_argument("name")
    action = actions.add_parser(
        "traffic", help="a canary share and/or a shadow (leave both out to clear them)"
    )
    action.add_argument("name")
    action.add_argument("--canary", default=None, metavar="VERSION")
    action.add_argument("--percent", type=float, default=0.0, help="the canary's share, 0-100")
    action.add_argument("--shadow", default=None, metavar="VERSION")
    p.set_defaults(handler=_cmd_models)


def _cmd_models(args: argparse.Namespace) -> int:
    import os

    from veracity.cli.admin_client import ModelAdmin, format_listing

    # Read at run time from the shell, never at import: the key is the caller's, not the
    # service's settings.
    key = args.api_key or os.environ.get("VERACITY_ADMIN_KEY")
    admin = ModelAdmin(args.url, key, if_revision=args.if_revision)
    action = args.action
    if action == "list":
        result = admin.list()
        print(json.dumps(result, indent=2) if args.json else format_listing(result))
        return 0
    if action == "load":
        result = admin.load(args.name, args.version)
    elif action == "unload":
        result = admin.unload(args.name, args.version)
    elif action == "promote":
        result = admin.promote(args.name, args.version)
    elif action == "rollback":
        result = admin.rollback(args.name)
    else:
        result = admin.traffic(
            args.name, canary=args.canary, percent=args.percent, shadow=args.shadow
        )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        canary = result.get("canary") or {}
        print(
            f"{result['name']}: serving {result['serving_version']}, previous "
            f"{result['previous_version'] or '-'}, canary "
            + (f"{canary['version']} {canary['percent']:g}%" if canary else "-")
            + f", shadow {result['shadow_version'] or '-'}"
            + f" (revision {result.get('revision', 0)})"
        )
    return 0
