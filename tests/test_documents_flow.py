"""Documents travel the tree end-to-end encrypted and come back as signed receipts."""

from __future__ import annotations

import pytest
import pytest_asyncio

from federation import Federation, govnode, last_json, seven_node_federation, wait_until
from node import actions, doc_views
from node.sending import AttachmentFile, send_document
from protocol.documents import Document
from protocol.frames import new_message_id
from protocol.workflow import Action

SECRET_TITLE = "关于做好防汛防风工作的紧急通知"
SECRET_BODY = "各地级以上市人民政府：台风即将登陆，务必落实各项防御措施。"


# One federation for the whole module: every test sends its own documents.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def federation(tmp_path_factory):
    federation = await seven_node_federation(tmp_path_factory.mktemp("federation"))
    await federation.wait_converged()
    yield federation
    await federation.stop_all()


def draft(sender, to, cc=(), **fields) -> Document:
    values = dict(doc_id=new_message_id(), title=SECRET_TITLE, kind="通知",
                  issuer=sender.config.name, issuer_id=sender.id, main_recipients=tuple(to),
                  cc_recipients=tuple(cc), doc_number="粤府办〔2026〕7号", urgency="特急",
                  body=SECRET_BODY)
    values.update(fields)
    return Document(**values)


async def received_state(node, doc_id: bytes) -> str | None:
    inbound = await node.context.documents.inbound_by_doc(doc_id)
    return inbound.state if inbound else None


async def delivery_states(sender, doc_id: bytes) -> dict[str, str]:
    return {d.recipient: d.state for d in await sender.context.documents.deliveries_of(doc_id)}


PAIRS = [
    ("gd", "gd.chaozhou"),  # province to city, one hop down
    ("gd.chaozhou", "gd"),  # city to province, one hop up
    ("gd.chaozhou.raoping", "gd.chaozhou"),  # county to its city
    ("gd", "gd.shantou.nanao"),  # province to county, two hops down
    ("gd.shantou.nanao", "gd"),  # county to province, two hops up
    ("gd.chaozhou", "gd.shantou"),  # city to city through the province
    ("gd.chaozhou.raoping", "gd.shantou.nanao"),  # county to county: four relays
    ("gd.chaozhou.raoping", "gd.chaozhou.chaoan"),  # sibling counties through their city
]


@pytest.mark.parametrize("origin, destination", PAIRS)
async def test_a_document_arrives_once_between_every_pair_of_levels(federation, origin, destination):
    sender, recipient = federation.nodes[origin], federation.nodes[destination]
    sent = await send_document(sender.context, draft(sender, [destination]))
    doc_id = sent.document.doc_id
    await wait_until(lambda: _eq(delivery_states(sender, doc_id), {destination: "delivered"}),
                     what="the delivered receipt")
    assert await received_state(recipient, doc_id) == "delivered"
    view = await doc_views.show_document(recipient.context, doc_id)
    assert (view["title"], view["body"]) == (SECRET_TITLE, SECRET_BODY)
    assert [step["step"] for step in view["timeline"]] == ["delivered"]


async def _eq(coroutine, expected) -> bool:
    return await coroutine == expected


async def test_relays_store_no_plaintext_and_the_sender_sees_who_signed(federation):
    sender = federation.nodes["gd.chaozhou.raoping"]
    recipient = federation.nodes["gd.shantou.nanao"]
    title, body, attached = "饶平至南澳专递：渔汛协作事宜", "只有南澳县能读到这段正文。", "附件正文机密内容"
    sent = await send_document(sender.context, draft(sender, ["gd.shantou.nanao"], title=title, body=body),
                               [AttachmentFile("附件1.txt", "text/plain", attached.encode())])
    doc_id = sent.document.doc_id
    await wait_until(lambda: _eq(received_state(recipient, doc_id), "delivered"), what="arrival")
    await actions.act(recipient.context, doc_id, Action.SIGN_FOR, actor="张璐")
    await wait_until(lambda: _eq(delivery_states(sender, doc_id), {"gd.shantou.nanao": "signed_for"}),
                     what="the signed_for receipt at the sender")
    view = await doc_views.show_document(sender.context, doc_id)
    (entry,) = view["recipients"]
    assert [(s["step"], s["actor"]) for s in entry["timeline"]] == [
        ("delivered", "gd.shantou.nanao"), ("signed_for", "张璐")]
    for relay in ("gd.chaozhou", "gd", "gd.shantou"):
        stored = b"".join(p.read_bytes() for p in sorted(federation.data_dir(relay).glob("node.db*")))
        for secret in (title, body, attached):
            assert secret.encode() not in stored, f"{relay} holds plaintext {secret!r}"
    at_recipient = b"".join(p.read_bytes() for p in federation.data_dir(recipient.id).glob("node.db*"))
    assert title.encode() in at_recipient and attached.encode() in at_recipient  # the check can see


async def test_the_cli_sends_and_signs_and_shows_the_timeline(federation):
    sender_dir = str(federation.data_dir("gd"))
    result = await govnode("send", "--data", sender_dir, "--to", "gd.chaozhou,gd.shantou",
                           "--cc", "gd.chaozhou.raoping", "--title", "关于春节值班安排的通知",
                           "--doc-number", "粤府办〔2026〕1号", "--kind", "通知", "--urgency", "加急",
                           "--body", "请各单位做好值班安排。", "--json")
    doc_id = last_json(result)["id"]
    city = federation.nodes["gd.chaozhou"]
    await wait_until(lambda: _eq(received_state(city, bytes.fromhex(doc_id)), "delivered"),
                     what="the CLI-queued document to arrive")
    await govnode("doc", "sign-for", doc_id[:8], "--by", "李明", "--data", str(federation.data_dir(city.id)))
    province = federation.nodes["gd"]
    await wait_until(lambda: _eq(delivery_states(province, bytes.fromhex(doc_id)), {
        "gd.chaozhou": "signed_for", "gd.shantou": "delivered", "gd.chaozhou.raoping": "delivered"}),
        what="the receipts back at the province")
    shown = last_json(await govnode("doc", "show", doc_id, "--data", sender_dir, "--json"))
    by_recipient = {entry["recipient"]: entry for entry in shown["recipients"]}
    assert by_recipient["gd.chaozhou"]["timeline"][-1]["actor"] == "李明"
    assert by_recipient["gd.chaozhou.raoping"]["copy"] == "cc"
    listed = last_json(await govnode("doc", "list", "--inbox", "--data", str(federation.data_dir(city.id)), "--json"))
    assert doc_id in [d["id"] for d in listed["documents"]]
    assert all(d["direction"] == "received" for d in listed["documents"])


async def test_a_request_is_answered_by_a_reply_and_the_full_workflow_reaches_the_sender(federation):
    county, city = federation.nodes["gd.chaozhou.raoping"], federation.nodes["gd.chaozhou"]
    request = await send_document(county.context, draft(county, ["gd.chaozhou"], kind="请示",
                                                        title="关于申请防汛资金的请示", signer="王强"))
    doc_id = request.document.doc_id
    await wait_until(lambda: _eq(received_state(city, doc_id), "delivered"), what="the 请示 at the city")
    for action, actor, detail in ((Action.SIGN_FOR, "李明", ""), (Action.ASSIGN, "李明", "财政科"),
                                  (Action.INSTRUCT, "陈市长", "同意，抓紧办理"),
                                  (Action.COMPLETE, "赵科长", "")):
        await actions.act(city.context, doc_id, action, actor=actor, detail=detail)
    reply = await send_document(city.context, draft(city, ["gd.chaozhou.raoping"], kind="批复",
                                                    title="关于同意拨付防汛资金的批复",
                                                    in_reply_to=doc_id))
    await wait_until(lambda: _eq(delivery_states(county, doc_id), {"gd.chaozhou": "completed"}),
                     what="the completed receipt at the county")
    await wait_until(lambda: _eq(received_state(county, reply.document.doc_id), "delivered"),
                     what="the 批复 at the county")
    view = await doc_views.show_document(county.context, doc_id)
    assert [s["step"] for s in view["recipients"][0]["timeline"]] == [
        "delivered", "signed_for", "assigned", "instructed", "completed"]
    answer = await doc_views.show_document(county.context, reply.document.doc_id)
    assert answer["in_reply_to"] == doc_id.hex()
