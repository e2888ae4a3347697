"""The example configs in configs/ load, and config mistakes are refused by name."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from node.config import DEFAULTS, ConfigError, config_from_dict, load_config, render_config
from node.operations import NewNode, init_root

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
ANCHOR = "ab" * 32


@pytest.mark.parametrize("name", ["province.toml", "city.toml", "county.toml"])
def test_example_configs_load_once_given_a_trust_anchor(name):
    parsed = tomllib.loads((CONFIGS / name).read_text(encoding="utf-8"))
    parsed["node"]["trust_anchor"] = ANCHOR
    config = config_from_dict(parsed, source=name)
    assert config.trust_anchor == ANCHOR
    assert config.node_id == parsed["node"]["id"]


def test_rendered_config_round_trips_with_defaults():
    text = render_config({"node": {"id": "gd.chaozhou", "name": "潮州", "level": "city",
                                   "trust_anchor": ANCHOR}})
    config = config_from_dict(tomllib.loads(text))
    assert config.gossip.interval_ms == DEFAULTS["gossip"]["interval_ms"]
    assert config.port == DEFAULTS["server"]["port"]


def test_secure_delete_is_off_unless_asked_for():
    node = {"id": "gd", "name": "广东", "level": "province", "trust_anchor": ANCHOR}
    assert config_from_dict({"node": node}).secure_delete is False
    assert config_from_dict({"node": node, "storage": {"secure_delete": True}}).secure_delete


def test_crypto_runs_in_threads_unless_the_node_shares_its_cores():
    node = {"id": "gd", "name": "广东", "level": "province", "trust_anchor": ANCHOR}
    assert config_from_dict({"node": node}).delivery["crypto_threads"] is True
    shared = config_from_dict({"node": node, "delivery": {"crypto_threads": False}})
    assert shared.delivery["crypto_threads"] is False


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(gosip={}), "unknown section [gosip]"),
    (lambda c: c["node"].update(colour="red"), "unknown key 'colour' in [node]"),
    (lambda c: c["node"].pop("id"), "[node] id is required"),
    (lambda c: c["node"].update(id="Gd"), "uppercase"),
    (lambda c: c["node"].update(trust_anchor="xyz"), "fingerprint"),
    (lambda c: c.setdefault("server", {}).update(port="8440"), "port must be int"),
    (lambda c: c.setdefault("server", {}).update(port=70000), "port must be 0-65535"),
    (lambda c: c.setdefault("storage", {}).update(secure_delete="yes"),
     "[storage] secure_delete must be bool"),
    (lambda c: c.setdefault("delivery", {}).update(crypto_threads=0),
     "[delivery] crypto_threads must be bool"),
])
def test_config_mistakes_are_refused_with_the_key_named(change, message):
    parsed = {"node": {"id": "gd", "name": "广东", "level": "province", "trust_anchor": ANCHOR}}
    change(parsed)
    with pytest.raises(ConfigError, match=None) as info:
        config_from_dict(parsed, source="node.toml")
    assert message in str(info.value) and "node.toml" in str(info.value)


@pytest.mark.parametrize("asked, written", [(None, True), (False, False)])
async def test_a_new_node_writes_where_its_bulk_crypto_runs(tmp_path, asked, written):
    await init_root(tmp_path / "gd", NewNode(node_id="gd", name="广东省", port=0,
                                            discovery=False, crypto_threads=asked))
    text = (tmp_path / "gd" / "node.toml").read_text(encoding="utf-8")
    assert f"crypto_threads = {'true' if written else 'false'}" in text  # for people to read
    assert load_config(tmp_path / "gd").delivery["crypto_threads"] is written
