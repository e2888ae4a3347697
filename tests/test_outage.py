"""A city down for a while: its counties' documents queue and flow when it returns,
other cities are not delayed, backoff is capped, and recovery is noticed at once."""

from __future__ import annotations

import tomllib

import pytest

from federation import Federation, seven_node_federation, wait_until
from node.config import render_config
from node.sending import send_document
from protocol.documents import Document
from protocol.frames import new_message_id


def notice(sender, to: str, number: int) -> Document:
    return Document(doc_id=new_message_id(), title=f"关于汛期值守的通知（第{number}批）", kind="通知",
                    issuer=sender.config.name, issuer_id=sender.id, main_recipients=(to,))


async def reconfigure(federation: Federation, node_id: str, section: str, **values: int) -> None:
    """Restart a node with changed settings, as an operator would edit node.toml."""
    await federation.stop(node_id)
    path = federation.data_dir(node_id) / "node.toml"
    config = tomllib.loads(path.read_text(encoding="utf-8"))
    config.setdefault(section, {}).update(values)
    path.write_text(render_config(config), encoding="utf-8")
    await federation.start(node_id)


async def delivered(node, doc_ids: list[bytes]) -> bool:
    for doc_id in doc_ids:
        states = {d.state for d in await node.context.documents.deliveries_of(doc_id)}
        if states != {"delivered"}:
            return False
    return True


@pytest.fixture
async def federation(tmp_path):
    federation = await seven_node_federation(tmp_path)
    yield federation
    await federation.stop_all()


async def test_queue_for_a_down_city_flows_on_return_without_delaying_the_others(federation):
    # A short cap makes an outage "longer than the cap" quick to stage.
    await reconfigure(federation, "gd", "delivery", max_backoff_ms=1000)
    province = federation.nodes["gd"]
    await federation.wait_converged()
    await federation.stop("gd.chaozhou")

    to_down_city = [await send_document(province.context, notice(province, "gd.chaozhou.raoping", n))
                    for n in range(20)]
    to_other_city = [await send_document(province.context, notice(province, "gd.shantou.nanao", n))
                     for n in range(20)]
    await wait_until(lambda: delivered(province, [s.document.doc_id for s in to_other_city]),
                     timeout=10, what="the other city's documents while gd.chaozhou is down")
    # The outage outlasts the cap several times over: retries keep coming, each
    # at most a capped interval apart.
    await wait_until(lambda: province.delivery.failures.get("gd.chaozhou", 0) >= 4, timeout=20,
                     what="repeated capped retries to the down city")
    depths = await province.context.outbox.depths()
    assert depths.get("gd.chaozhou") == 20

    await federation.start("gd.chaozhou")
    await wait_until(lambda: delivered(province, [s.document.doc_id for s in to_down_city]),
                     timeout=15, what="the queued documents after the city returned")
    assert (await province.context.outbox.depths()).get("gd.chaozhou") is None


async def test_a_neighbour_seen_alive_ends_a_long_backoff_at_once(federation):
    province = federation.nodes["gd"]
    await federation.wait_converged()
    await federation.stop("gd.shantou")
    sent = await send_document(province.context, notice(province, "gd.shantou", 1))
    # With the default 60 s cap, five failures already mean waits of several seconds.
    await wait_until(lambda: province.delivery.failures.get("gd.shantou", 0) >= 5, timeout=30,
                     what="the backoff to grow")
    early_before = province.delivery.early_retries
    await federation.start("gd.shantou")
    await wait_until(lambda: delivered(province, [sent.document.doc_id]), timeout=30,
                     what="delivery once the city is seen alive")
    assert province.delivery.early_retries > early_before  # woken by life, not by the timer
