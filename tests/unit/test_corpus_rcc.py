"""The Qt resource reader, on bundles this test writes byte by byte as Qt's rcc lays them out."""

from __future__ import annotations

import struct
import zlib

import pytest

from veracity.corpus.manifest import CorpusError
from veracity.corpus.rcc import COMPRESSED_ZLIB, COMPRESSED_ZSTD, DIRECTORY, read_rcc


def _tree(files: dict[str, tuple[bytes, int]]) -> dict[str, object]:
    root: dict[str, object] = {}
    for path, content in files.items():
        *dirs, name = path.split("/")
        node = root
        for d in dirs:
            child = node.setdefault(d, {})
            assert isinstance(child, dict)
            node = child
        node[name] = content
    return root


def build_rcc(files: dict[str, tuple[bytes, int]], *, version: int = 3) -> bytes:
    """A Qt resource bundle holding ``files`` (path -> (stored bytes, flags)).

    Nodes are laid out breadth first, each directory's children contiguous, as rcc does;
    the sections come in the order data, names, tree to show offsets are followed.
    """
    names = bytearray()
    data = bytearray()
    name_offsets: dict[str, int] = {}

    def name_offset(name: str) -> int:
        if name not in name_offsets:
            name_offsets[name] = len(names)
            encoded = name.encode("utf-16-be")
            names.extend(struct.pack(">HI", len(encoded) // 2, 0) + encoded)
        return name_offsets[name]

    nodes: list[bytes] = [b""]
    queue: list[tuple[int, str, dict[str, object]]] = [(0, "", _tree(files))]
    extra = struct.pack(">Q", 0) if version >= 2 else b""
    while queue:
        index, name, directory = queue.pop(0)
        first = len(nodes)
        children = sorted(directory.items())
        nodes.extend(b"" for _ in children)
        nodes[index] = (
            struct.pack(">IHII", name_offset(name), DIRECTORY, len(children), first) + extra
        )
        for offset, (child_name, child) in enumerate(children):
            if isinstance(child, dict):
                queue.append((first + offset, child_name, child))
                continue
            assert isinstance(child, tuple)
            stored, flags = child
            nodes[first + offset] = (
                struct.pack(">IHHHI", name_offset(child_name), flags, 0, 0, len(data)) + extra
            )
            data.extend(struct.pack(">I", len(stored)) + stored)
    header_size = 24 if version >= 3 else 20
    data_offset = header_size
    names_offset = data_offset + len(data)
    tree_offset = names_offset + len(names)
    header = b"qres" + struct.pack(">IIII", version, tree_offset, data_offset, names_offset)
    if version >= 3:
        header += struct.pack(">I", 0)
    return header + bytes(data) + bytes(names) + b"".join(nodes)


def zlib_stored(raw: bytes) -> bytes:
    """Bytes as Qt's qCompress stores them: big-endian length, then a zlib stream."""
    return struct.pack(">I", len(raw)) + zlib.compress(raw)


WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(range(200))
TEXT = "Beschreibung: éléphant\n".encode() * 50


@pytest.mark.parametrize("version", [1, 2, 3])
def test_reads_plain_and_zlib_entries_in_nested_directories(version: int) -> None:
    blob = build_rcc(
        {
            "gcompris/src/activities/a/images/one.webp": (WEBP, 0),
            "gcompris/src/activities/a/images/two.txt": (zlib_stored(TEXT), COMPRESSED_ZLIB),
            "gcompris/src/activities/b/three.webp": (WEBP[::-1], 0),
            "top.qml": (b"import QtQuick 2.12", 0),
        },
        version=version,
    )

    bundle = read_rcc(blob)

    assert sorted(bundle) == [
        "gcompris/src/activities/a/images/one.webp",
        "gcompris/src/activities/a/images/two.txt",
        "gcompris/src/activities/b/three.webp",
        "top.qml",
    ]
    assert bundle["gcompris/src/activities/a/images/one.webp"].read() == WEBP
    assert bundle["gcompris/src/activities/a/images/two.txt"].read() == TEXT
    assert bundle["gcompris/src/activities/b/three.webp"].read() == WEBP[::-1]
    assert bundle["top.qml"].read() == b"import QtQuick 2.12"


def test_a_zstd_entry_is_refused_by_name_not_returned_compressed() -> None:
    bundle = read_rcc(build_rcc({"x/y.webp": (b"(\xb5/\xfd frame", COMPRESSED_ZSTD)}))
    with pytest.raises(CorpusError, match=r"x/y\.webp: zstd"):
        bundle["x/y.webp"].read()


def test_a_zlib_entry_whose_length_disagrees_is_refused() -> None:
    stored = struct.pack(">I", len(TEXT) + 1) + zlib.compress(TEXT)
    bundle = read_rcc(build_rcc({"t.txt": (stored, COMPRESSED_ZLIB)}))
    with pytest.raises(CorpusError, match="header says"):
        bundle["t.txt"].read()


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"PK\x03\x04" + bytes(40), "magic"),
        (b"qres" + struct.pack(">IIII", 9, 0, 0, 0), "version 9"),
        (b"qres\x00\x00", "truncated"),
    ],
)
def test_not_a_bundle_is_refused(blob: bytes, message: str) -> None:
    with pytest.raises(CorpusError, match=message):
        read_rcc(blob)


def test_an_entry_longer_than_the_bundle_is_refused() -> None:
    blob = bytearray(build_rcc({"a/b.webp": (WEBP, 0)}))
    blob[24:28] = struct.pack(">I", 10**6)  # the only entry's length, first in the data
    bundle_error = pytest.raises(CorpusError, match="resource data truncated")
    with bundle_error:
        read_rcc(bytes(blob))


def test_a_bundle_cut_short_is_refused() -> None:
    blob = build_rcc({"a/b.webp": (WEBP, 0)})
    with pytest.raises(CorpusError, match="outside the bundle"):
        read_rcc(blob[:-30])
