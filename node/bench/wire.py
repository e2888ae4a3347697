"""``govnode bench wire``: the frame layer's cost beyond the cryptography.

Signed-frame encode+sign and decode+verify of a frame with a 4 KiB document body,
each beside raw PyNaCl sign / verify of the same payload bytes.
"""

from __future__ import annotations

import os

import nacl.signing

from node.bench.measure import compare
from protocol import frames, messages
from protocol.keys import NodeKeys

BODY_BYTES = 4096
TARGET_RATIO = 0.8


def run_wire_bench(*, rounds: int = 9, round_seconds: float = 0.25) -> dict[str, object]:
    keys = NodeKeys.generate()
    body = messages.DocumentBody(sealed=os.urandom(BODY_BYTES))
    origin, destination = "gd.chaozhou.raoping", "gd.shantou.nanao"
    # Ids come from a counter so both sides of the comparison do no extra syscalls.
    counter = iter(range(1 << 62))

    def frame_encode_and_sign() -> bytes:
        frame = frames.make_frame(body, origin=origin, destination=destination,
                                  created_at=1_767_225_600_000,
                                  message_id=next(counter).to_bytes(16, "big"))
        return frames.encode_frame(frame, keys)

    wire_bytes = frame_encode_and_sign()
    payload = frames.parse_frame(wire_bytes).payload
    verify_key = keys.public.verify_key

    def frame_decode_and_verify() -> frames.Frame:
        return frames.open_frame(wire_bytes, lambda _origin: verify_key)

    raw_signing_key = nacl.signing.SigningKey(keys.sign_seed)
    raw_verify_key = raw_signing_key.verify_key
    raw_signed = raw_signing_key.sign(payload)

    sign = compare("frame encode+sign", frame_encode_and_sign, "raw PyNaCl sign",
                   lambda: raw_signing_key.sign(payload), rounds=rounds,
                   round_seconds=round_seconds, target_ratio=TARGET_RATIO)
    verify = compare("frame decode+verify", frame_decode_and_verify, "raw PyNaCl verify",
                     lambda: raw_verify_key.verify(raw_signed), rounds=rounds,
                     round_seconds=round_seconds, target_ratio=TARGET_RATIO)
    return {
        "body_bytes": BODY_BYTES,
        "frame_bytes": len(wire_bytes),
        "frame_sign_per_s": round(sign.per_second, 1),
        "frame_verify_per_s": round(verify.per_second, 1),
        "raw_sign_per_s": round(sign.limit_per_second, 1),
        "raw_verify_per_s": round(verify.limit_per_second, 1),
        "ratio_sign": round(sign.ratio, 3),
        "ratio_verify": round(verify.ratio, 3),
        "target_ratio": TARGET_RATIO,
        "comparisons": [sign, verify],
    }
