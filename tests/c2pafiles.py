"""Files with C2PA content credentials, signed in the tests with the CAI's own Builder and a
throwaway certificate chain (a test root and an ES256 end-entity certificate with the key
usages the C2PA trust model asks for), and the hostile variants the service must survive."""

from __future__ import annotations

import datetime
import io
import struct
from dataclasses import dataclass
from functools import cache
from typing import Any

import c2pa
import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
AI_GENERATED = IPTC + "trainedAlgorithmicMedia"
CAMERA = IPTC + "digitalCapture"


@dataclass(frozen=True)
class Authority:
    """A test root and one signer under it."""

    root_pem: str
    chain_pem: str  # the signer's certificate, then the root's
    key_pem: str

    def signer(self) -> Any:
        info = c2pa.C2paSignerInfo(
            c2pa.C2paSigningAlg.ES256, self.chain_pem.encode(), self.key_pem.encode(), None
        )
        return c2pa.Signer.from_info(info)


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )


def _usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
) -> x509.CertificateBuilder:
    """What the root and the signer share: names, key, serial, a year's validity, the
    subject key identifier; the caller adds what makes it a CA or a signer, and signs."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


@cache
def authority(
    organization: str = "Example Camera Co", common_name: str = "Test Camera"
) -> Authority:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"{organization} Test Root", organization)
    root = (
        _certificate(root_name, root_key, root_name, root_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(sign=False, ca=True), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        _certificate(_name(common_name, organization), key, root_name, root_key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(sign=True, ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.EMAIL_PROTECTION, x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
        )
        .sign(root_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return Authority(_pem(root), _pem(leaf) + _pem(root), key_pem)


def photo(width: int = 320, height: int = 240, seed: int = 0, fmt: str = "JPEG") -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def manifest(
    source_type: str | None = CAMERA, *, assertions: int = 0, media_type: str = "image/jpeg"
) -> dict[str, Any]:
    created: dict[str, Any] = {"action": "c2pa.created"}
    if source_type is not None:
        created["digitalSourceType"] = source_type
    return {
        "claim_generator_info": [{"name": "veracity-tests", "version": "1.0"}],
        "title": "test",
        "format": media_type,
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [created]}}]
        + [
            {"label": f"org.veracity.test.a{i}", "data": {"n": i, "pad": "x" * 100}}
            for i in range(assertions)
        ],
    }


def sign(
    data: bytes,
    media_type: str = "image/jpeg",
    *,
    definition: dict[str, Any] | None = None,
    by: Authority | None = None,
    remote_url: str | None = None,
    thumbnail: bytes | None = None,
    ingredient: bytes | None = None,
) -> bytes:
    """``data`` with a manifest signed by ``by`` (the default test authority)."""
    definition = dict(definition or manifest(media_type=media_type))
    if ingredient is not None:
        definition["assertions"] = [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}}
                    ]
                },
            }
        ]
    if thumbnail is not None:
        definition["thumbnail"] = {"format": "image/jpeg", "identifier": "thumbnail"}
    context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})
    with c2pa.Builder(definition, context=context) as builder:
        if ingredient is not None:
            builder.add_ingredient(
                {"title": "parent", "relationship": "parentOf", "label": "parent"},
                media_type,
                io.BytesIO(ingredient),
            )
        if thumbnail is not None:
            builder.add_resource("thumbnail", io.BytesIO(thumbnail))
        if remote_url is not None:
            builder.set_no_embed()
            builder.set_remote_url(remote_url)
        out = io.BytesIO()
        builder.sign((by or authority()).signer(), media_type, io.BytesIO(data), out)
    return out.getvalue()


def deep(data: bytes, depth: int) -> bytes:
    """``data`` signed ``depth`` times, each signing taking the last as its parent."""
    current = sign(data)
    for _ in range(depth - 1):
        current = sign(current, ingredient=current)
    return current


# JPEG surgery on the APP11 segments (0xFFEB) that carry a C2PA store.


def _segments(jpeg: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of each segment before the scan, SOI excluded."""
    assert jpeg[:2] == b"\xff\xd8"
    found, at = [], 2
    while jpeg[at] == 0xFF and jpeg[at + 1] != 0xDA:
        marker = jpeg[at + 1]
        (length,) = struct.unpack(">H", jpeg[at + 2 : at + 4])
        found.append((marker, jpeg[at + 4 : at + 2 + length]))
        at += 2 + length
    return [*found, (-1, jpeg[at:])]


def _join(segments: list[tuple[int, bytes]]) -> bytes:
    out = bytearray(b"\xff\xd8")
    for marker, payload in segments:
        if marker == -1:
            out += payload
        else:
            out += bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload
    return bytes(out)


def app11(jpeg: bytes) -> list[bytes]:
    return [payload for marker, payload in _segments(jpeg) if marker == 0xEB]


def with_app11(jpeg: bytes, payloads: list[bytes]) -> bytes:
    """``jpeg`` with its APP11 segments replaced by ``payloads`` (right after SOI)."""
    kept = [(m, p) for m, p in _segments(jpeg) if m != 0xEB]
    return _join([(0xEB, p) for p in payloads] + kept)


def truncated(signed_jpeg: bytes) -> bytes:
    """The store cut in half: its first segment keeps half its bytes, the rest are gone."""
    first = app11(signed_jpeg)[0]
    return with_app11(signed_jpeg, [first[: len(first) // 2]])


def malformed(jpeg: bytes) -> bytes:
    """An APP11 segment that looks like a C2PA store (JPEG XT header, a JUMBF superbox
    labelled c2pa) and holds garbage with impossible box lengths."""
    junk = np.random.default_rng(7).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    box = (
        struct.pack(">I", 0xFFFFFF00) + b"jumb" + struct.pack(">I", 0x7FFFFFFF) + b"jumdc2pa" + junk
    )
    return with_app11(jpeg, [b"JP" + struct.pack(">HI", 1, 1) + box])


def png_store(png: bytes) -> bytes:
    """The JUMBF store of a signed PNG (its caBX chunk's data)."""
    at = 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        if png[at + 4 : at + 8] == b"caBX":
            return png[at + 8 : at + 8 + length]
        at += 12 + length
    raise ValueError("no caBX chunk")


def foreign_store(jpeg: bytes) -> bytes:
    """A JPEG carrying a store signed for a PNG (it says it binds a PNG's bytes)."""
    store = png_store(
        sign(photo(fmt="PNG"), "image/png", definition=manifest(media_type="image/png"))
    )
    header = b"JP" + struct.pack(">HI", 1, 1)
    chunk = 65_000
    return with_app11(jpeg, [header + store[i : i + chunk] for i in range(0, len(store), chunk)])
