"""``govnode demo``: the mini federation, its documents and every receipt back at the senders."""

from __future__ import annotations

import io

from click.testing import CliRunner
from rich.console import Console

from node.cli import main
from node.demo import demo
from node.topology import load_topology

NOTICE = "通知 粤府办〔2026〕1号"
REQUEST = "请示 饶府办〔2026〕3号"
REPLY = "批复 潮府办〔2026〕5号"
LETTER = "函 饶府办函〔2026〕4号"
SIGNED = ["delivered", "signed_for"]


async def test_the_demo_sends_handles_and_answers_and_every_receipt_comes_back(tmp_path):
    output = io.StringIO()
    result = await demo(Console(file=output, width=120), load_topology("mini"), tmp_path)
    assert result.ok, (result.error, result.missing, output.getvalue())
    assert result.missing == [] and result.error == ""

    timelines = {item.label: {entry["recipient"]: [(s["step"], s["actor"])
                                                   for s in entry["timeline"]]
                              for entry in view["recipients"]}
                 for item, view in result.documents}
    steps = {label: {recipient: [step for step, _ in timeline]
                     for recipient, timeline in by_recipient.items()}
             for label, by_recipient in timelines.items()}
    assert steps == {
        NOTICE: {"gd.chaozhou": SIGNED, "gd.shantou": SIGNED},
        REQUEST: {"gd.chaozhou": ["delivered", "signed_for", "assigned", "instructed",
                                  "completed"]},
        REPLY: {"gd.chaozhou.raoping": SIGNED},
        LETTER: {"gd.shantou.nanao": SIGNED},
    }
    # Each step names who took it: the node for delivery, a person for everything else.
    assert timelines[LETTER]["gd.shantou.nanao"] == [("delivered", "gd.shantou.nanao"),
                                                     ("signed_for", "张璐")]
    assert [actor for _, actor in timelines[REQUEST]["gd.chaozhou"]] == [
        "gd.chaozhou", "李明", "李明", "陈建华", "赵敏"]

    views = {item.label: (item, view) for item, view in result.documents}
    notice_item, notice = views[NOTICE]
    assert (notice["urgency"], notice["kind"], notice_item.sender) == ("加急", "通知", "gd")
    reply_item, reply = views[REPLY]
    request_item, _ = views[REQUEST]
    assert reply["in_reply_to"] == request_item.doc_id.hex() and reply_item.answers == REQUEST
    assert views[REQUEST][1]["signer"] == "王强"

    printed = output.getvalue()
    for text in (NOTICE, REQUEST, REPLY, LETTER, "summary", "签收 signed_for", "批示 instructed",
                 "every expected receipt arrived"):
        assert text in printed
    assert set(result.timings) == {"build_s", "converge_s", "exchange_s"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(load_topology("mini").node_ids)


async def test_a_missing_receipt_fails_the_demo_and_is_named(tmp_path, monkeypatch):
    import node.demo as demo_module

    real_sign_for = demo_module.sign_for

    async def shantou_never_signs(node, doc_id):
        if node.id != "gd.shantou":
            await real_sign_for(node, doc_id)

    monkeypatch.setattr(demo_module, "sign_for", shantou_never_signs)
    monkeypatch.setattr(demo_module, "EXCHANGE_TIMEOUT_S", 1.0)
    output = io.StringIO()
    result = await demo(Console(file=output, width=120), load_topology("mini"), tmp_path)
    assert not result.ok
    assert result.missing == [f"{NOTICE} → gd.shantou: signed_for"]
    assert "missing receipt" in output.getvalue() and "demo FAILED" in output.getvalue()


def test_the_command_exits_0_and_keeps_the_data_when_asked(tmp_path):
    kept = tmp_path / "federation"
    result = CliRunner().invoke(main, ["demo", "--data", str(kept)])
    assert result.exit_code == 0, result.output
    assert "every expected receipt arrived" in result.output
    assert (kept / "gd.shantou.nanao" / "node.db").exists()
    again = CliRunner().invoke(main, ["demo", "--data", str(kept)])
    assert again.exit_code == 1 and "is not empty" in again.output


def test_a_missing_topology_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--topology", str(tmp_path / "absent.toml")])
    assert result.exit_code == 1 and "absent.toml: not found" in result.output


def test_the_protocol_walkthrough_is_still_there():
    result = CliRunner().invoke(main, ["demo", "--walkthrough"])
    assert result.exit_code == 0, result.output
    assert "bad_signature" in result.output and "revoked" in result.output
