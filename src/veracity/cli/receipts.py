"""``receipt-key`` and ``verify-receipt``: signing keys, and checking a receipt offline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from veracity.cli.arguments import Subcommands


def add_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "receipt-key",
        help="generate an Ed25519 key pair for signing verdict receipts",
        description="Writes the private key (PEM, mode 0600) to --out and the public key "
        "beside it (.pub.pem). Point VERACITY_RECEIPT_SIGNING_KEY at the private key.",
    )
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(handler=_cmd_receipt_key)

    p = sub.add_parser(
        "verify-receipt",
        help="check a verdict receipt's signature (and, given the file, its hash) offline",
        description="Exit 0: the receipt was signed by one of the keys (and is about --file). "
        "Exit 1: the file differs. Exit 2: the receipt does not verify.",
    )
    p.add_argument("receipt", help="the receipt (compact JWS), @FILE holding it, or - for stdin")
    p.add_argument(
        "--keys",
        type=Path,
        required=True,
        help="the service's JWKS (saved from /.well-known/jwks.json) or a public key PEM",
    )
    p.add_argument("--file", type=Path, default=None, help="the image or video it is about")
    p.set_defaults(handler=_cmd_verify_receipt)


def _cmd_receipt_key(args: argparse.Namespace) -> int:
    from veracity.receipts import generate_key

    if args.out.exists():
        print(f"veracity receipt-key: {args.out} exists; choose another path", file=sys.stderr)
        return 2
    private, public = generate_key(args.out)
    print(f"signing key (keep secret): {private}\npublic key: {public}")
    return 0


def _cmd_verify_receipt(args: argparse.Namespace) -> int:

    from veracity.receipts import file_sha256, load_public_keys, verify_receipt

    given: str = args.receipt
    if given == "-":
        given = sys.stdin.read()
    elif given.startswith("@"):
        given = Path(given[1:]).read_text()
    claims = verify_receipt(given, load_public_keys(args.keys))
    print(json.dumps(claims, indent=2, sort_keys=True))
    if args.file is not None:
        actual = file_sha256(args.file)
        if actual != claims.get("input_sha256"):
            print(
                f"veracity verify-receipt: {args.file} is not the file this receipt is about "
                f"(SHA-256 {actual}, the receipt says {claims.get('input_sha256')})",
                file=sys.stderr,
            )
            return 1
        print(f"signature valid; {args.file} is the file it is about", file=sys.stderr)
    else:
        print("signature valid", file=sys.stderr)
    return 0
