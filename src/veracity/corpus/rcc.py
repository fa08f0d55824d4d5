"""Files inside a Qt binary resource bundle (``.rcc``), as GCompris ships its images.

Hand-written because no maintained parser of the format exists on the package index: the
only readers are Qt itself (PySide6/PyQt's ``QResource``, a few hundred MB to read a
few hundred pictures). The format, as Qt's ``rcc`` writes it (``qtbase/src/tools/rcc`` and
``QResourceRoot`` in ``qresource.cpp``):

- header: ``b"qres"``, then big-endian uint32 format version (1-3), tree offset, data
  offset, names offset, and from version 3 a uint32 of overall flags;
- tree: fixed-size nodes (14 bytes, 22 from version 2 with a uint64 modification time),
  node 0 the root directory. A node is name offset (uint32), flags (uint16), then for a
  directory the child count and the index of its first child (uint32 each), for a file the
  country and language (uint16 each) and its data offset (uint32);
- names: uint16 length in UTF-16 units, uint32 hash, the name in UTF-16BE;
- data: uint32 length, then the bytes; zlib-compressed entries start with the uncompressed
  length as a big-endian uint32 (Qt's ``qCompress``), zstd-compressed ones are one frame.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from veracity.corpus.manifest import CorpusError

MAGIC = b"qres"
COMPRESSED_ZLIB = 0x01
DIRECTORY = 0x02
COMPRESSED_ZSTD = 0x04
# Qt's own sanity bound on a directory; a larger count means a corrupt tree.
_MAX_CHILDREN = 1 << 20
_MAX_DEPTH = 64


@dataclass(frozen=True)
class RccEntry:
    """One file in the bundle: its path from the root (no leading slash) and raw data."""

    path: str
    flags: int
    stored: bytes

    def read(self) -> bytes:
        """The file's bytes, decompressed when the bundle stored them compressed."""
        if self.flags & COMPRESSED_ZSTD:
            raise CorpusError(
                f"{self.path}: zstd-compressed resource entries are not supported "
                "(no zstd decoder is a dependency of this project)"
            )
        if self.flags & COMPRESSED_ZLIB:
            if len(self.stored) < 4:
                raise CorpusError(f"{self.path}: compressed entry shorter than its header")
            expected = struct.unpack(">I", self.stored[:4])[0]
            try:
                data = zlib.decompress(self.stored[4:])
            except zlib.error as e:
                raise CorpusError(f"{self.path}: corrupt zlib data in the bundle") from e
            if len(data) != expected:
                raise CorpusError(
                    f"{self.path}: decompressed to {len(data)} bytes, header says {expected}"
                )
            return data
        return self.stored


class _Reader:
    def __init__(self, blob: bytes) -> None:
        if blob[:4] != MAGIC:
            raise CorpusError("not a Qt resource bundle (no 'qres' magic)")
        self.blob = blob
        self.version, self.tree, self.data, self.names = self._u32s(4, 4)
        if self.version not in (1, 2, 3):
            raise CorpusError(f"Qt resource format version {self.version} is not supported")
        self.node_size = 14 if self.version == 1 else 22

    def _u32s(self, offset: int, count: int) -> tuple[int, ...]:
        end = offset + 4 * count
        if end > len(self.blob):
            raise CorpusError("Qt resource bundle truncated")
        return struct.unpack(f">{count}I", self.blob[offset:end])

    def _node(self, index: int) -> tuple[int, int, int, int]:
        offset = self.tree + index * self.node_size
        if offset + 14 > len(self.blob):
            raise CorpusError(f"resource tree node {index} lies outside the bundle")
        name_offset, flags = struct.unpack(">IH", self.blob[offset : offset + 6])
        a, b = struct.unpack(">II", self.blob[offset + 6 : offset + 14])
        return name_offset, flags, a, b

    def _name(self, name_offset: int) -> str:
        offset = self.names + name_offset
        if offset + 6 > len(self.blob):
            raise CorpusError("resource name lies outside the bundle")
        length = struct.unpack(">H", self.blob[offset : offset + 2])[0]
        start = offset + 6
        raw = self.blob[start : start + 2 * length]
        if len(raw) != 2 * length:
            raise CorpusError("resource name truncated")
        return raw.decode("utf-16-be")

    def _payload(self, data_offset: int) -> bytes:
        offset = self.data + data_offset
        (length,) = self._u32s(offset, 1)
        payload = self.blob[offset + 4 : offset + 4 + length]
        if len(payload) != length:
            raise CorpusError("resource data truncated")
        return payload

    def walk(self, index: int, prefix: str, depth: int) -> Iterator[RccEntry]:
        if depth > _MAX_DEPTH:
            raise CorpusError("resource tree deeper than any real bundle (a cycle?)")
        _, _, count, first = self._node(index)
        if count > _MAX_CHILDREN:
            raise CorpusError(f"resource directory claims {count} children")
        for child in range(first, first + count):
            name_offset, child_flags, _, data_offset = self._node(child)
            path = f"{prefix}{self._name(name_offset)}"
            if child_flags & DIRECTORY:
                yield from self.walk(child, f"{path}/", depth + 1)
            else:
                yield RccEntry(path, child_flags, self._payload(data_offset))


def read_rcc(blob: bytes) -> dict[str, RccEntry]:
    """Every file in a Qt resource bundle, by its path from the bundle's root.

    Raises:
        CorpusError: The bytes are not a bundle this parser understands, or are corrupt.
    """
    reader = _Reader(blob)
    _, flags, _, _ = reader._node(0)
    if not flags & DIRECTORY:
        raise CorpusError("the resource tree's root is not a directory")
    return {entry.path: entry for entry in reader.walk(0, "", 0)}
