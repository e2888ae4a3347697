"""Bad input to ``POST /v1/enroll`` and ``GET /v1/enroll/{subject}/{fingerprint}``
answers 4xx with a stable error code and stores nothing: garbage, wrong types and
every truncation of a valid request are malformed, identity errors (no proof of
possession, the wrong parent, a root id, a bad node id) get their own codes,
oversized bodies are too large even when chunked, msgpack callers get msgpack
refusals, and bad path parameters or methods of the state query are refused. The
federation, observers and builders are those of tests/test_endpoint_input.py."""

from __future__ import annotations

import random
from typing import AsyncIterator

import pytest
import pytest_asyncio
import yarl

from federation import Federation
from node.app import Node
from node.clock import now_ms
from node.http_api import MAX_ENROLLMENT_BYTES
from protocol import certs
from protocol.keys import NodeKeys
from protocol.wire import pack, unpack
from test_endpoint_input import (CITY, MSGPACK_ACCEPT, ROOT, assert_refused, call, enrollment_payload,
                                 enrollment_request, garbage, gossip_frame, root_and_city,
                                 signed_enrollment_payload, stores_nothing)

pytestmark = pytest.mark.asyncio(loop_scope="module")


# --- the federation ----------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def federation(tmp_path_factory) -> AsyncIterator[Federation]:
    federation = await root_and_city(tmp_path_factory.mktemp("endpoint-input-enroll"))
    yield federation
    await federation.stop_all()


@pytest.fixture
def root(federation: Federation) -> Node:
    return federation.nodes[ROOT]


@pytest.fixture
def city(federation: Federation) -> Node:
    return federation.nodes[CITY]


# --- POST /v1/enroll -------------------------------------------------------------------


async def test_enroll_garbage_empty_and_wrong_types_are_malformed(root, http):
    rng = random.Random(1)
    keys = NodeKeys.generate()
    bodies = {
        "garbage": garbage(rng, 300),
        "empty": b"",
        "text": "请批准".encode(),
        "int instead of an envelope": pack(7),
        "map instead of an envelope": pack({"payload": b"x", "signature": b"y" * 64}),
        "ints instead of bin": pack([1, 2]),
        "short signature": pack([pack({"v": 1}), b"sig"]),
        "payload not msgpack": pack([b"\xc1\xc1", b"s" * 64]),
        "payload an int": signed_enrollment_payload(5, keys),
        "unknown extra key": signed_enrollment_payload(enrollment_payload(keys, extra=1), keys),
        "missing key": signed_enrollment_payload(enrollment_payload(keys, at=...), keys),
        "int instead of bin key": signed_enrollment_payload(enrollment_payload(keys, sk=5), keys),
        "short key": signed_enrollment_payload(enrollment_payload(keys, sk=b"k" * 31), keys),
        "str instead of int": signed_enrollment_payload(enrollment_payload(keys, at="now"), keys),
        "bool instead of int": signed_enrollment_payload(enrollment_payload(keys, at=True), keys),
        "unknown level": signed_enrollment_payload(enrollment_payload(keys, lvl="empire"), keys),
        "empty name": signed_enrollment_payload(enrollment_payload(keys, name=" "), keys),
        "version 2": signed_enrollment_payload(enrollment_payload(keys, v=2), keys),
        "a certificate": certs.self_signed_root(keys, subject="gd", name="假", not_before=0,
                                                not_after=now_ms() + 10**9).encode(),
    }
    for what, body in bodies.items():
        async with stores_nothing(root, http):
            answer = await call(http, "POST", root.urls[0] + "/v1/enroll", data=body)
            try:
                assert_refused(answer, "malformed")
            except AssertionError as error:
                raise AssertionError(f"{what}: {error}") from None


async def test_enroll_identity_refusals(root, city, http):
    keys = NodeKeys.generate()
    cases = [
        # signed by a different key than the one it asks to certify: no proof of possession
        ("bad_signature", signed_enrollment_payload(enrollment_payload(keys), NodeKeys.generate())),
        # a grandchild must enroll with its own parent
        ("name_constraint", enrollment_request("gd.chaozhou.raoping")),
        # another province's city
        ("name_constraint", enrollment_request("hn.changsha")),
        # a root id cannot enroll at all
        ("name_constraint", signed_enrollment_payload(enrollment_payload(keys, sub="gd"), keys)),
        ("bad_node_id", signed_enrollment_payload(enrollment_payload(keys, sub="GD.ShanTou"), keys)),
        ("bad_node_id", signed_enrollment_payload(enrollment_payload(keys, sub="gd..x"), keys)),
        # a gossip frame is not an enrollment request
        ("malformed", gossip_frame(root, city)),
    ]
    for code, body in cases:
        async with stores_nothing(root, http):
            assert_refused(await call(http, "POST", root.urls[0] + "/v1/enroll", data=body), code)


async def test_enroll_every_truncation_of_a_valid_request_is_malformed(root, http):
    valid = enrollment_request()
    async with stores_nothing(root, http):
        for length in range(len(valid)):
            answer = await call(http, "POST", root.urls[0] + "/v1/enroll", data=valid[:length])
            assert_refused(answer, "malformed")
        # and with one byte too many
        answer = await call(http, "POST", root.urls[0] + "/v1/enroll", data=valid + b"\x00")
        assert_refused(answer, "malformed")


async def test_enroll_oversized_body_is_too_large(root, http):
    valid = enrollment_request()
    padded = valid + b"\x00" * (MAX_ENROLLMENT_BYTES + 1 - len(valid))
    assert len(padded) == MAX_ENROLLMENT_BYTES + 1

    async def chunked(data: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(data), 4096):
            yield data[start:start + 4096]

    async with stores_nothing(root, http):
        assert_refused(await call(http, "POST", root.urls[0] + "/v1/enroll", data=padded),
                       "too_large")
        assert_refused(await call(http, "POST", root.urls[0] + "/v1/enroll",
                                  data=b"\x91" * (4 * MAX_ENROLLMENT_BYTES)), "too_large")
        # No Content-Length (chunked): the limit must hold all the same.
        answer = await call(http, "POST", root.urls[0] + "/v1/enroll", data=chunked(padded))
        assert_refused(answer, "too_large")


async def test_enroll_refusals_answer_msgpack_to_msgpack_callers(root, http):
    async with stores_nothing(root, http):
        answer = await call(http, "POST", root.urls[0] + "/v1/enroll", data=b"\xc1garbage",
                            headers=MSGPACK_ACCEPT)
        assert_refused(answer, "malformed", as_msgpack=True)
        answer = await call(http, "POST", root.urls[0] + "/v1/enroll", data=b"",
                            headers={"Content-Type": "application/msgpack"})
        assert_refused(answer, "malformed", as_msgpack=True)
        answer = await call(http, "POST", root.urls[0] + "/v1/enroll",
                            data=b"x" * (MAX_ENROLLMENT_BYTES + 1), headers=MSGPACK_ACCEPT)
        assert_refused(answer, "too_large", as_msgpack=True)


# --- GET /v1/enroll/{subject}/{fingerprint} -------------------------------------------------


async def test_enrollment_state_bad_path_parameters(root, city, http):
    good_fpr = city.keys.fingerprint
    cases = [
        ("GD.CHAOZHOU", good_fpr, "bad_node_id"),
        ("gd..chaozhou", good_fpr, "bad_node_id"),
        ("-gd", good_fpr, "bad_node_id"),
        ("gd." + "x" * 40, good_fpr, "bad_node_id"),
        (".".join(["a"] * 9), good_fpr, "bad_node_id"),
        ("gd.%E6%BD%AE%E5%B7%9E", good_fpr, "bad_node_id"),  # 潮州, percent-encoded
        ("gd.chao%00zhou", good_fpr, "bad_node_id"),
        (CITY, "abc", "bad_key_file"),
        (CITY, good_fpr[:-1], "bad_key_file"),
        (CITY, good_fpr + "0", "bad_key_file"),
        (CITY, "z" * 64, "bad_key_file"),
        (CITY, "%E6%BD%AE" * 10, "bad_key_file"),
    ]
    for subject, fingerprint, code in cases:
        async with stores_nothing(root, http):
            url = f"{root.urls[0]}/v1/enroll/{subject}/{fingerprint}"
            answer = await call(http, "GET", yarl.URL(url, encoded=True))
            try:
                assert_refused(answer, code)
            except AssertionError as error:
                raise AssertionError(f"{subject}/{fingerprint}: {error}") from None
    async with stores_nothing(root, http):
        answer = await call(http, "GET", f"{root.urls[0]}/v1/enroll/GD/{good_fpr}",
                            headers=MSGPACK_ACCEPT)
        assert_refused(answer, "bad_node_id", as_msgpack=True)


async def test_enrollment_state_of_an_unknown_request_is_unknown_and_stores_nothing(root, http):
    async with stores_nothing(root, http):
        answer = await call(http, "GET", f"{root.urls[0]}/v1/enroll/gd.nowhere/{'ab' * 32}")
        assert answer.status == 200
        document = unpack(answer.body)
        assert document["status"] == "unknown" and document["subject"] == "gd.nowhere"
        assert document["chain"] == () and document["records"] == ()
        # a fingerprint as printed (grouped, prefixed) is accepted the same way
        grouped = "sha256:" + ":".join(["abcd"] * 16)
        answer = await call(http, "GET", f"{root.urls[0]}/v1/enroll/gd.nowhere/{grouped}")
        assert answer.status == 200 and unpack(answer.body)["status"] == "unknown"


async def test_enrollment_state_with_a_body_or_wrong_method(root, city, http):
    url = f"{root.urls[0]}/v1/enroll/{CITY}/{city.keys.fingerprint}"
    async with stores_nothing(root, http):
        answer = await call(http, "GET", url, data=b"\xc1" * 100)  # a body is ignored
        assert answer.status == 200 and unpack(answer.body)["status"] == "approved"
        for method in ("POST", "PUT", "DELETE"):
            answer = await call(http, method, url, data=enrollment_request())
            assert answer.status == 405, (method, answer.status)
