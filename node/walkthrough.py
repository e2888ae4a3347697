"""``govnode demo`` until the node runtime exists: the protocol, step by step.

Builds a three-level chain of keys and certificates (province > city > county) by
enrollment, signs a document frame whose body is sealed to the county, verifies it,
shows that a relay cannot read it, and shows a tampered copy refused with its code.
Exits 0 only if every step behaved as the protocol says.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

from protocol import certs, frames, ids, messages, sealing
from protocol.errors import ProtocolError
from protocol.keys import NodeKeys, format_fingerprint

YEAR_MS = 365 * 24 * 3600 * 1000
NOTICE = "关于做好2026年元旦春节期间有关工作的通知（粤府办〔2025〕12号）"


def run_walkthrough(console: Console) -> int:
    console.rule("govnode protocol walk-through")
    console.print("[dim]The node runtime is not built yet; this demo exercises protocol/ only.[/dim]")
    now = int(time.time() * 1000)
    root, city, county = NodeKeys.generate(), NodeKeys.generate(), NodeKeys.generate()
    chain = _enroll_chain(root, city, county, now)
    anchor = root.fingerprint
    console.print(f"trust anchor (gd): [bold]{format_fingerprint(anchor)}[/bold]")
    console.print(_chain_table(chain))
    leaf = certs.validate_chain(chain, trust_anchor=anchor, now_ms=now)
    console.print(f"chain validates: leaf = {leaf.subject} ({leaf.name})")

    sealed = sealing.seal(NOTICE.encode(), county.public.box_key)
    frame = frames.make_frame(messages.DocumentBody(sealed), origin="gd",
                              destination="gd.chaozhou.raoping", created_at=now,
                              message_id=frames.new_message_id())
    data = frames.encode_frame(frame, root)
    console.print(f"signed frame: {len(data)} bytes, route "
                  f"{' > '.join(('gd',) + ids.route('gd', 'gd.chaozhou.raoping'))}")
    received = frames.open_frame(data, lambda origin: chain[0].keys.verify_key)
    text = sealing.open_sealed(received.body.sealed, county.public.box_key, county.box_secret)
    console.print(f"county verifies and opens it: [green]{text.decode()}[/green]")

    checks = [
        ("relay gd.chaozhou cannot open the body",
         lambda: sealing.open_sealed(received.body.sealed, city.public.box_key, city.box_secret)),
        ("tampered copy (one byte flipped) is refused",
         lambda: frames.open_frame(_flip(data, len(data) - 100), lambda o: chain[0].keys.verify_key)),
        ("frame signed by the wrong key is refused",
         lambda: frames.open_frame(frames.encode_frame(frame, city), lambda o: chain[0].keys.verify_key)),
        ("county revoked by its city is refused",
         lambda: certs.validate_chain(chain, trust_anchor=anchor, now_ms=now, revocations=[
             certs.revoke(city, signer="gd.chaozhou", subject="gd.chaozhou.raoping",
                          up_to_serial=1, reason="demo", revoked_at=now)])),
    ]
    failures = 0
    for label, attempt in checks:
        try:
            attempt()
        except ProtocolError as refusal:
            console.print(f"  [green]✓[/green] {label}: [bold]{refusal.code}[/bold] ({refusal.detail})")
        else:
            failures += 1
            console.print(f"  [red]✗[/red] {label}: it was accepted")
    console.rule("all steps behaved as specified" if not failures else f"{failures} step(s) FAILED")
    return 1 if failures else 0


def _enroll_chain(root: NodeKeys, city: NodeKeys, county: NodeKeys, now: int) -> list[certs.Certificate]:
    root_cert = certs.self_signed_root(root, subject="gd", name="广东省人民政府办公厅",
                                       not_before=now, not_after=now + 10 * YEAR_MS)
    city_request = certs.decode_enrollment_request(certs.make_enrollment_request(
        city, subject="gd.chaozhou", name="潮州市人民政府办公室", level=certs.Level.CITY,
        requested_at=now).encode())
    city_cert = certs.certify_request(root, issuer="gd", request=city_request, serial=1,
                                      not_before=now, not_after=now + YEAR_MS)
    county_request = certs.decode_enrollment_request(certs.make_enrollment_request(
        county, subject="gd.chaozhou.raoping", name="饶平县人民政府办公室",
        level=certs.Level.COUNTY, requested_at=now, division="445122").encode())
    county_cert = certs.certify_request(city, issuer="gd.chaozhou", request=county_request,
                                        serial=1, not_before=now, not_after=now + YEAR_MS)
    return [root_cert, city_cert, county_cert]


def _chain_table(chain: list[certs.Certificate]) -> Table:
    table = Table(title="certificate chain (root first)")
    for column in ("subject", "name", "level", "issuer", "serial", "key fingerprint"):
        table.add_column(column)
    for cert in chain:
        table.add_row(cert.subject, cert.name, cert.level.value, cert.issuer, str(cert.serial),
                      format_fingerprint(cert.fingerprint)[:19] + "…")
    return table


def _flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1:]
