"""The JSON API for documents (/api/...), with API tokens the CLI creates.

One federation serves the module: the province ``gd`` and two cities. Documents go
through one node's API and are signed for through the recipient's API; every refusal
answers its status and stable code and leaves every node's stored rows as they were.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sqlite3
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from federation import Federation, govnode, last_json, wait_until
from node import actions
from node.api import API_MAX_BODY_BYTES
from node.app import Node
from node.sending import send_document
from protocol.documents import Document
from protocol.errors import all_error_classes
from protocol.frames import new_message_id
from protocol.workflow import Action

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT, CITY, OTHER = "gd", "gd.chaozhou", "gd.shantou"
COUNTED = ("documents", "deliveries", "attachments", "outbox", "inbound", "receipts", "api_tokens")
STATUS = {cls.code: cls.http_status for cls in all_error_classes()}
PDF = b"%PDF-1.4 " + bytes(range(256)) * 8


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory) -> dict[str, Any]:
    federation = Federation(tmp_path_factory.mktemp("api"))
    await federation.create_root(ROOT)
    await federation.enroll(CITY, "潮州市人民政府办公室")
    await federation.enroll(OTHER, "汕头市人民政府办公室")
    await federation.wait_converged()
    tokens = {key: await new_token(federation, node_id, key, role) for key, node_id, role in (
        ("gd_clerk", ROOT, "clerk"), ("city_clerk", CITY, "clerk"),
        ("city_leader", CITY, "leader"), ("revoked", ROOT, "admin"))}
    await govnode("token", "revoke", "revoked", "--data", str(federation.data_dir(ROOT)))
    yield {"federation": federation, "tokens": tokens}
    await federation.stop_all()


@pytest_asyncio.fixture(loop_scope="module")
async def http():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


async def new_token(federation: Federation, node_id: str, name: str, role: str) -> str:
    result = await govnode("token", "create", "--name", name, "--role", role,
                           "--data", str(federation.data_dir(node_id)), "--json")
    return last_json(result)["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(http: aiohttp.ClientSession, node: Node, method: str, path: str, token: str | None,
               body: Any = None, *, raw: bytes | None = None) -> tuple[int, Any]:
    headers = bearer(token) if token else {}
    data = raw if raw is not None else (None if body is None else json.dumps(body))
    async with http.request(method, node.urls[0] + path, data=data, headers=headers) as response:
        return response.status, await response.json(content_type=None)


def document_json(to=(CITY,), **fields: Any) -> dict[str, Any]:
    values = {"to": list(to) if isinstance(to, (list, tuple)) else to, "title": "关于报送汛期值班表的通知", "doc_number": "粤府办〔2026〕9号",
              "kind": "通知", "urgency": "加急", "body": "请于本周五前报送。", "signer": "王强"}
    values.update(fields)
    return values


def counts(node: Node) -> dict[str, int]:
    connection = sqlite3.connect(f"file:{node.data.database_file}?mode=ro", uri=True)
    try:
        return {t: connection.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in COUNTED}
    finally:
        connection.close()


async def quiet(federation: Federation) -> dict[str, dict[str, int]]:
    """Wait until no frame is in flight anywhere, then count every node's rows."""
    await wait_until(lambda: all(counts(n)["outbox"] == 0 for n in federation.nodes.values()),
                     what="every outbox to drain")
    return {node_id: counts(node) for node_id, node in federation.nodes.items()}


async def delivered_at(node: Node, doc_id: str) -> bool:
    inbound = await node.context.documents.inbound_by_doc(bytes.fromhex(doc_id))
    return inbound is not None and inbound.state == "delivered"


# --- tokens ------------------------------------------------------------------------------


async def test_tokens_are_created_listed_and_revoked_with_the_cli(world):
    data = str(world["federation"].data_dir(OTHER))
    created = last_json(await govnode("token", "create", "--name", "oa-system", "--role", "handler",
                                      "--data", data, "--json"))
    token = created["token"]
    assert token.startswith("gn_") and len(token) >= 40 and created["role"] == "handler"
    listed = last_json(await govnode("token", "list", "--data", data, "--json"))["tokens"]
    assert [(t["name"], t["role"]) for t in listed] == [("oa-system", "handler")]
    assert token not in json.dumps(listed)
    stored = sqlite3.connect(str(world["federation"].data_dir(OTHER) / "node.db"))
    try:  # only the hash is kept
        assert stored.execute("SELECT token_hash FROM api_tokens").fetchall() == [
            (hashlib.sha256(token.encode()).digest(),)]
    finally:
        stored.close()
    again = await govnode("token", "create", "--name", "oa-system", "--role", "clerk",
                          "--data", data, expect_ok=False)
    assert again.exit_code == 1 and "exists" in again.output
    system = await govnode("token", "create", "--name", "x", "--role", "system", "--data", data,
                           expect_ok=False)
    assert system.exit_code == 2  # not a choice
    await govnode("token", "revoke", "oa-system", "--data", data)
    assert last_json(await govnode("token", "list", "--data", data, "--json"))["tokens"] == []
    missing = await govnode("token", "revoke", "oa-system", "--data", data, expect_ok=False)
    assert missing.exit_code == 1 and "no token" in missing.output


# --- sending, signing for, following --------------------------------------------------------


async def test_a_document_sent_through_the_api_is_signed_for_through_the_recipients_api(world, http):
    federation, tokens = world["federation"], world["tokens"]
    province, city = federation.nodes[ROOT], federation.nodes[CITY]
    attachments = [{"name": "值班表.pdf", "data": base64.b64encode(PDF).decode()},
                   {"name": "说明.txt", "media_type": "text/plain",
                    "data": base64.b64encode("附件说明".encode()).decode()}]
    status, sent = await call(http, province, "POST", "/api/documents", tokens["gd_clerk"],
                              document_json(cc=[OTHER], attachments=attachments,
                                            deadline="2026-12-31"))
    assert status == 201, sent
    doc_id = sent["id"]
    assert [d["recipient"] for d in sent["deliveries"]] == [CITY, OTHER]
    await wait_until(lambda: delivered_at(city, doc_id), what="arrival at the city")

    status, inbox = await call(http, city, "GET", "/api/documents?box=inbox", tokens["city_clerk"])
    assert status == 200 and doc_id in [d["id"] for d in inbox["documents"]]
    status, view = await call(http, city, "GET", f"/api/documents/{doc_id[:10]}", tokens["city_clerk"])
    assert status == 200 and view["state"] == "delivered" and view["issuer"] == province.config.name
    assert [(a["name"], a["media_type"], a["sha256"]) for a in view["attachments"]] == [
        ("值班表.pdf", "application/pdf", hashlib.sha256(PDF).hexdigest()),
        ("说明.txt", "text/plain", hashlib.sha256("附件说明".encode()).hexdigest())]
    assert await city.context.documents.attachment(hashlib.sha256(PDF).digest()) == PDF

    status, acted = await call(http, city, "POST", f"/api/documents/{doc_id}/actions",
                               tokens["city_clerk"], {"action": "sign_for", "by": "李明"})
    assert (status, acted) == (200, {"id": doc_id, "action": "sign_for", "state": "signed_for"})

    async def signed_at_sender() -> bool:
        _, shown = await call(http, province, "GET", f"/api/documents/{doc_id}", tokens["gd_clerk"])
        steps = {e["recipient"]: [(s["step"], s["actor"]) for s in e["timeline"]]
                 for e in shown["recipients"]}
        return steps.get(CITY) == [("delivered", CITY), ("signed_for", "李明")]

    await wait_until(signed_at_sender, what="the signed_for step in the sender's API")
    status, outbox = await call(http, province, "GET", "/api/documents?box=outbox&limit=5",
                                tokens["gd_clerk"])
    assert status == 200 and outbox["documents"][0]["id"] == doc_id
    assert all(d["direction"] == "sent" for d in outbox["documents"])


async def test_retrying_with_the_same_id_answers_the_document_already_sent(world, http):
    federation, tokens = world["federation"], world["tokens"]
    province = federation.nodes[ROOT]
    doc_id = secrets.token_hex(16)
    body = document_json(id=doc_id, attachments=[{"name": "a.pdf", "data": base64.b64encode(PDF).decode()}])
    status, first = await call(http, province, "POST", "/api/documents", tokens["gd_clerk"], body)
    assert status == 201 and first["id"] == doc_id
    before = await quiet(federation)
    status, again = await call(http, province, "POST", "/api/documents", tokens["gd_clerk"], body)
    assert (status, again) == (200, first)
    status, changed = await call(http, province, "POST", "/api/documents", tokens["gd_clerk"],
                                 {**body, "title": "另一份文件"})
    assert (status, changed["error"]) == (400, "invalid_document") and "already used" in changed["detail"]
    assert await quiet(federation) == before


# --- refusals ---------------------------------------------------------------------------------


async def signed_for_document(world) -> str:
    """A document at the city, signed for: the next step could be an instruction."""
    federation = world["federation"]
    province, city = federation.nodes[ROOT], federation.nodes[CITY]
    draft = Document(doc_id=new_message_id(), title="关于加强安全生产的通知", kind="通知",
                     issuer=province.config.name, issuer_id=ROOT, main_recipients=(CITY,))
    sent = await send_document(province.context, draft)
    doc_id = sent.document.doc_id.hex()
    await wait_until(lambda: delivered_at(city, doc_id), what="arrival at the city")
    await actions.act(city.context, sent.document.doc_id, Action.SIGN_FOR, actor="李明")
    return doc_id


def oversized_attachment(signed: str) -> dict[str, Any]:
    data = b"\x00" * (8 * 1024 * 1024 + 1)  # the node's default max_attachment_bytes + 1
    return document_json(attachments=[{"name": "big.bin", "data": base64.b64encode(data).decode()}])


REFUSALS = [
    # (case, node, method, path, token key or raw header value, body, expected code, detail has)
    ("no token", ROOT, "POST", "/api/documents", None, document_json(), "unauthorized", "Bearer"),
    ("bad token", ROOT, "POST", "/api/documents", "gn_" + "x" * 43, document_json(),
     "unauthorized", "unknown or revoked"),
    ("revoked token", ROOT, "POST", "/api/documents", "revoked", document_json(), "unauthorized",
     "unknown or revoked"),
    ("no token to read", ROOT, "GET", "/api/documents", None, None, "unauthorized", "Bearer"),
    ("malformed JSON", ROOT, "POST", "/api/documents", "gd_clerk", b'{"to": [', "malformed", "JSON"),
    ("not an object", ROOT, "POST", "/api/documents", "gd_clerk", [1, 2], "malformed", "object"),
    ("to is a string", ROOT, "POST", "/api/documents", "gd_clerk", document_json(to=CITY),
     "malformed", "'to'"),
    ("title is a number", ROOT, "POST", "/api/documents", "gd_clerk", document_json(title=7),
     "malformed", "'title'"),
    ("unknown field", ROOT, "POST", "/api/documents", "gd_clerk", document_json(tittle="x"),
     "malformed", "'tittle'"),
    ("bad base64", ROOT, "POST", "/api/documents", "gd_clerk",
     document_json(attachments=[{"name": "a.pdf", "data": "not base64!"}]), "malformed", "base64"),
    ("bad client id", ROOT, "POST", "/api/documents", "gd_clerk", document_json(id="xyz"),
     "malformed", "'id'"),
    ("missing title", ROOT, "POST", "/api/documents", "gd_clerk", document_json(title=None),
     "invalid_document", "标题 title is required"),
    ("unknown kind", ROOT, "POST", "/api/documents", "gd_clerk", document_json(kind="便条"),
     "invalid_document", "文种 kind"),
    ("unknown recipient", ROOT, "POST", "/api/documents", "gd_clerk",
     document_json(to=[CITY, "gd.nowhere"]), "invalid_document", "gd.nowhere"),
    ("no recipient", ROOT, "POST", "/api/documents", "gd_clerk", document_json(to=[]),
     "invalid_document", "at least one"),
    ("bad deadline", ROOT, "POST", "/api/documents", "gd_clerk", document_json(deadline="2026-02-30"),
     "invalid_document", "办理时限 deadline"),
    ("id of a received document", CITY, "POST", "/api/documents", "city_clerk",
     lambda signed: document_json(to=[ROOT], id=signed), "invalid_document", "received"),
    ("unknown reply", ROOT, "POST", "/api/documents", "gd_clerk",
     document_json(kind="批复", in_reply_to="abcdef0123"), "invalid_document", "in_reply_to"),
    ("oversized attachment", ROOT, "POST", "/api/documents", "gd_clerk", oversized_attachment,
     "invalid_document", "over the limit"),
    ("body over the API limit", ROOT, "POST", "/api/documents", "gd_clerk",
     b" " * (API_MAX_BODY_BYTES + 1), "too_large", "limit"),
    ("clerk instructs", CITY, "POST", "/api/documents/{signed}/actions", "city_clerk",
     {"action": "instruct", "by": "李明", "text": "同意"}, "not_permitted", "leader"),
    ("return without reason", CITY, "POST", "/api/documents/{signed}/actions", "city_leader",
     {"action": "return", "by": "陈市长"}, "illegal_transition", "reason"),
    ("unknown action", CITY, "POST", "/api/documents/{signed}/actions", "city_leader",
     {"action": "deliver", "by": "陈市长"}, "malformed", "sign_for"),
    ("nobody acting", CITY, "POST", "/api/documents/{signed}/actions", "city_leader",
     {"action": "instruct", "by": "  "}, "malformed", "'by'"),
    ("two details", CITY, "POST", "/api/documents/{signed}/actions", "city_leader",
     {"action": "instruct", "by": "陈市长", "text": "a", "detail": "b"}, "malformed", "one of"),
    ("action on an unknown document", CITY, "POST", "/api/documents/{unknown}/actions", "city_leader",
     {"action": "sign_for", "by": "李明"}, "not_found", "no document"),
    ("action on a sent document", ROOT, "POST", "/api/documents/{signed}/actions", "gd_clerk",
     {"action": "sign_for", "by": "李明"}, "not_found", "not a document this node received"),
    ("unknown document", ROOT, "GET", "/api/documents/{unknown}", "gd_clerk", None, "not_found",
     "no document"),
    ("not an id", ROOT, "GET", "/api/documents/xyz", "gd_clerk", None, "malformed", "hex"),
    ("bad limit", ROOT, "GET", "/api/documents?limit=0", "gd_clerk", None, "malformed", "limit"),
    ("bad box", ROOT, "GET", "/api/documents?box=trash", "gd_clerk", None, "malformed", "box"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def signed(world) -> str:
    return await signed_for_document(world)


@pytest.mark.parametrize("case, node_id, method, path, token, body, code, detail", REFUSALS,
                         ids=[case[0] for case in REFUSALS])
async def test_each_refusal_answers_its_code_and_stores_nothing(world, signed, http, case, node_id,
                                                              method, path, token, body, code, detail):
    federation = world["federation"]
    node = federation.nodes[node_id]
    path = path.format(signed=signed, unknown=secrets.token_hex(16))
    token = world["tokens"].get(token, token)
    body = body(signed) if callable(body) else body
    before = await quiet(federation)
    status, answer = await call(http, node, method, path, token,
                                None if isinstance(body, bytes) else body,
                                raw=body if isinstance(body, bytes) else None)
    assert (status, answer.get("error")) == (STATUS[code], code), answer
    assert set(answer) == {"error", "detail"} and detail in answer["detail"], answer
    assert await quiet(federation) == before, f"{case}: a refusal changed what is stored"


async def test_an_unauthorized_answer_names_the_scheme(world, http):
    node = world["federation"].nodes[ROOT]
    async with http.get(node.urls[0] + "/api/documents", headers={"Authorization": "Basic eDp5"}) as r:
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await r.json())["error"] == "unauthorized"


async def test_a_leader_instructs_through_the_api_and_the_sender_sees_it(world, signed, http):
    federation, tokens = world["federation"], world["tokens"]
    city = federation.nodes[CITY]
    status, acted = await call(http, city, "POST", f"/api/documents/{signed}/actions",
                               tokens["city_leader"], {"action": "instruct", "by": "陈市长",
                                                       "text": "请认真落实"})
    assert (status, acted["state"]) == (200, "signed_for")
    province = federation.nodes[ROOT]

    async def instructed() -> bool:
        _, shown = await call(http, province, "GET", f"/api/documents/{signed}", tokens["gd_clerk"])
        steps = shown["recipients"][0]["timeline"]
        return steps[-1]["step"] == "instructed" and steps[-1]["detail"] == "请认真落实"

    await wait_until(instructed, what="the instruction at the sender")
