"""Test vectors for SPEC.md, made from fixed seeds.

Theory of operation: ``generate()`` builds a small federation (root ``gd``, city
``gd.chaozhou``, county ``gd.chaozhou.raoping``) from fixed seeds at a fixed time and
returns every wire object as bytes. Ed25519 signatures are deterministic and the
sealing key is handed in, so the output never changes unless the wire format does.
SPEC.md carries these bytes in hex between markers; ``tests/test_vectors.py`` checks
that the SPEC, this module and the decoders agree, and
``python -m protocol.vectors --write SPEC.md`` rewrites the section after an
intentional format change.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

from protocol import certs, directory, frames, messages, sealing
from protocol.keys import NodeKeys

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
YEAR_MS = 365 * 24 * 3600 * 1000
BEGIN_MARKER = "<!-- BEGIN GENERATED VECTORS (python -m protocol.vectors --write protocol/SPEC.md) -->"
END_MARKER = "<!-- END GENERATED VECTORS -->"
HEX_LINE = 64


@dataclass(frozen=True)
class Federation:
    root: NodeKeys
    city: NodeKeys
    county: NodeKeys
    chain: tuple[certs.Certificate, ...]


def seed(name: str) -> bytes:
    return hashlib.sha256(f"govnode test vector {name}".encode()).digest()


def federation() -> Federation:
    root, city, county = (NodeKeys.from_seed(seed(n)) for n in ("gd", "chaozhou", "raoping"))
    root_cert = certs.self_signed_root(root, subject="gd", name="广东省人民政府办公厅",
                                       not_before=NOW_MS, not_after=NOW_MS + 10 * YEAR_MS,
                                       division="440000")
    request = certs.make_enrollment_request(city, subject="gd.chaozhou", name="潮州市人民政府办公室",
                                            level=certs.Level.CITY, requested_at=NOW_MS,
                                            division="445100")
    city_cert = certs.certify_request(root, issuer="gd", request=request, serial=1,
                                      not_before=NOW_MS, not_after=NOW_MS + YEAR_MS)
    county_cert = certs.issue_certificate(city, issuer="gd.chaozhou", subject="gd.chaozhou.raoping",
                                          name="饶平县人民政府办公室", level=certs.Level.COUNTY,
                                          subject_keys=county.public, serial=1, not_before=NOW_MS,
                                          not_after=NOW_MS + YEAR_MS, division="445122")
    return Federation(root, city, county, (root_cert, city_cert, county_cert))


def _counter_random(label: str):
    """A handed-in 'random' source that is a fixed stream, for reproducible sealing."""
    state = {"n": 0}

    def random_bytes(size: int) -> bytes:
        state["n"] += 1
        return hashlib.blake2b(f"{label}/{state['n']}".encode(), digest_size=size).digest()

    return random_bytes


def generate() -> dict[str, bytes]:
    fed = federation()
    root_cert, city_cert, county_cert = fed.chain
    vectors: dict[str, bytes] = {
        "key.gd.seed": seed("gd"),
        "key.gd.verify_key": fed.root.public.verify_key,
        "key.gd.box_key": fed.root.public.box_key,
        "key.chaozhou.seed": seed("chaozhou"),
        "key.raoping.seed": seed("raoping"),
        "key.raoping.verify_key": fed.county.public.verify_key,
        "key.raoping.box_key": fed.county.public.box_key,
        "enrollment.chaozhou": certs.make_enrollment_request(
            fed.city, subject="gd.chaozhou", name="潮州市人民政府办公室", level=certs.Level.CITY,
            requested_at=NOW_MS, division="445100").encode(),
        "cert.gd": root_cert.encode(),
        "cert.chaozhou": city_cert.encode(),
        "cert.raoping": county_cert.encode(),
    }
    sealed = sealing.seal("关于做好2026年元旦春节期间有关工作的通知".encode(),
                          fed.county.public.box_key, random_bytes=_counter_random("seal"))
    vectors["sealed.to_raoping"] = sealed
    document = frames.make_frame(messages.DocumentBody(sealed), origin="gd",
                                 destination="gd.chaozhou.raoping", created_at=NOW_MS,
                                 message_id=bytes(range(16)))
    vectors["frame.document"] = frames.encode_frame(document, fed.root)
    receipt = frames.make_frame(
        messages.ReceiptBody(document_id=bytes(range(16)), seq=2, step="signed_for",
                             actor="张璐", at=NOW_MS + 60_000),
        origin="gd.chaozhou.raoping", destination="gd", created_at=NOW_MS + 60_000,
        message_id=bytes(range(16, 32)))
    vectors["frame.receipt"] = frames.encode_frame(receipt, fed.county)
    delivered = messages.ReceiptsBody(tuple(
        messages.ReceiptBody(document_id=bytes([first] * 16), seq=1, step="delivered",
                             actor="gd.chaozhou.raoping", at=NOW_MS + 1000)
        for first in (1, 2)))
    vectors["frame.receipts"] = frames.encode_frame(frames.make_frame(
        delivered, origin="gd.chaozhou.raoping", destination="gd", created_at=NOW_MS + 1000,
        message_id=bytes(range(32, 48))), fed.county)
    revocation = certs.revoke(fed.city, signer="gd.chaozhou", subject="gd.chaozhou.raoping",
                              up_to_serial=1, reason="key compromised", revoked_at=NOW_MS + 1000)
    vectors["revocation.raoping"] = revocation.encode()
    endpoint = directory.sign_record(fed.county, directory.EndpointAnnouncement(
        "gd.chaozhou.raoping", 1, ("https://raoping.example:8443",), NOW_MS))
    vectors["record.endpoint.raoping"] = endpoint.encode()
    records = [directory.Record.of(c) for c in fed.chain] + [endpoint]
    vectors["digest.root"] = directory.digest_of(records).root
    return vectors


def render(vectors: dict[str, bytes]) -> str:
    parts = [BEGIN_MARKER, ""]
    for name, value in vectors.items():
        hex_text = value.hex()
        lines = [hex_text[i:i + HEX_LINE] for i in range(0, len(hex_text), HEX_LINE)]
        parts += [f"`{name}` ({len(value)} bytes)", "", f"```vector {name}", *lines, "```", ""]
    parts.append(END_MARKER)
    return "\n".join(parts)


def parse(spec_text: str) -> dict[str, bytes]:
    """Read the vectors back out of SPEC.md."""
    found: dict[str, bytes] = {}
    name, lines = None, []
    for line in spec_text.splitlines():
        if line.startswith("```vector "):
            name, lines = line.split(" ", 1)[1].strip(), []
        elif line.startswith("```") and name is not None:
            found[name] = bytes.fromhex("".join(lines))
            name = None
        elif name is not None:
            lines.append(line.strip())
    return found


def write(spec_path: Path) -> None:
    text = spec_path.read_text(encoding="utf-8")
    start, end = text.index(BEGIN_MARKER), text.index(END_MARKER) + len(END_MARKER)
    spec_path.write_text(text[:start] + render(generate()) + text[end:], encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write"] and len(sys.argv) == 3:
        write(Path(sys.argv[2]))
    else:
        print(render(generate()))
