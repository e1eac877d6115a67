"""A listener update, which a mesh's control plane sends on every change,
swaps Tollgate's configuration under load: the new configuration applies at
once, and every answer given under the old one reaches the ledger after
the old listener has drained and its filter configuration is gone."""

import json
import os
import threading
import time

import openai
import pytest
import yaml

from conftest import openai_client, wait_for
from stack import WASM, free_port, render
from test_budgets import key_id, ledger

MESSAGES = [{"role": "user", "content": "Say hello"}]
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ALIAS = "reload-alias"


def write_atomically(path, text: str):
    """Envoy watches the file's directory for a move onto it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def tollgate_config(listener: dict) -> dict:
    """The StringValue holding Tollgate's JSON configuration (wasm or native)."""
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    typed = hcm["http_filters"][0]["typed_config"]
    return typed["filter_config"] if "filter_config" in typed else typed["config"]["configuration"]


@pytest.fixture(scope="module")
def lds(stack, tmp_path_factory):
    """An Envoy whose listener comes from a file (LDS) and drains in 1 s;
    yields it and a function that rewrites its Tollgate configuration."""
    workdir = tmp_path_factory.mktemp("lds")
    port, admin_port = free_port(), free_port()
    config = yaml.safe_load(render(
        wasm=WASM, listen_port=port, admin_port=admin_port, sidecar_port=stack.sidecar_port,
        mock_port=stack.mock_port, otlp_port=stack.otlp_port, real=stack.real, chain=stack.chain))
    listener = config["static_resources"].pop("listeners")[0]
    lds_path = workdir / "lds.yaml"

    def publish(listener: dict):
        write_atomically(lds_path, yaml.safe_dump({"resources": [{"@type": LISTENER_TYPE, **listener}]}))

    publish(listener)
    # A dynamic resource needs the node named.
    config["node"] = {"id": "tollgate-lds", "cluster": "tollgate", **config.get("node", {})}
    config["dynamic_resources"] = {"lds_config": {"path_config_source": {"path": str(lds_path)},
                                                  "resource_api_version": "V3"}}
    envoy = stack.add_envoy("envoy-lds", listen_port=port, admin_port=admin_port,
                            config=yaml.safe_dump(config, sort_keys=False), args=("--drain-time-s", "1"))

    def reconfigure(change):
        """Changes Tollgate's configuration; `None` removes the listener."""
        if change is None:
            write_atomically(lds_path, yaml.safe_dump({"resources": []}))
            return
        value = tollgate_config(listener)
        tollgate = json.loads(value["value"])
        change(tollgate)
        value["value"] = json.dumps(tollgate)
        publish(listener)

    yield envoy, reconfigure
    envoy.stop()


class Load:
    """Two threads calling the gateway until stopped."""

    def __init__(self, client):
        self.client = client
        self.answered, self.unanswered, self.failures = [], [], []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(2)]
        for t in self.threads:
            t.start()

    def run(self):
        while not self.stop.is_set():
            try:
                self.client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
                self.answered.append(1)
            except openai.APIConnectionError:
                # Envoy closes a drained chain's connections; a request sent
                # on one as it closes gets no answer (and may or may not have
                # reached the provider).
                self.unanswered.append(1)
            except openai.APIError as e:
                self.failures.append(repr(e))

    def wait(self, more: int):
        before = len(self.answered)
        wait_for(lambda: len(self.answered) >= before + more, timeout=10)

    def end(self):
        self.stop.set()
        for t in self.threads:
            t.join()


def all_in_ledger(stack, kid: str, load: Load, extra: int = 0):
    """Every answer is in the ledger once (`extra`: answers outside `load`)."""
    expected = len(load.answered) + extra
    wait_for(lambda: len(ledger(stack, kid)) >= expected, timeout=15, step=0.2)
    time.sleep(0.5)  # anything more would have settled by now
    rows = ledger(stack, kid)
    assert expected <= len(rows) <= expected + len(load.unanswered), \
        f"{len(rows)} ledger rows for {expected} answers ({len(load.unanswered)} connections closed under a request)"
    assert len({r["request_id"] for r in rows}) == len(rows)


def test_a_listener_update_applies_and_loses_no_answer(stack, lds, make_key):
    envoy, reconfigure = lds
    key = make_key()
    kid = key_id(stack, key)
    client = openai_client(envoy.base_url, key)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model=ALIAS, messages=MESSAGES)
    updates = envoy.stats("listener_manager.lds.update_success").get("listener_manager.lds.update_success", 0)

    # Requests keep flowing while the listener changes.
    load = Load(client)
    load.wait(20)
    reconfigure(lambda c: c["models"].append({"name": ALIAS, "provider": "openai",
                                               "upstream_model": "gpt-4o-mini"}))
    updated, _ = wait_for(lambda: envoy.stats("listener_manager.lds.update_success")
                          .get("listener_manager.lds.update_success", 0) > updates, timeout=10)
    assert updated, "Envoy did not take the new listener"
    # The new configuration answers at once; the old one drains.
    served, _ = wait_for(lambda: answers_alias(client), timeout=5)
    assert served, "the new model alias was not served after the update"
    # Only the filter chain changed: Envoy updates the listener in place
    # and drains the old chain, whose connections close after the drain
    # time (the clients reconnect to the new one).
    stats = envoy.stats("listener_manager")
    assert stats.get("listener_manager.listener_in_place_updated") == 1, stats
    drained, _ = wait_for(lambda: envoy.stats("listener_manager.total_filter_chains_draining")
                          .get("listener_manager.total_filter_chains_draining", 1) == 0, timeout=15)
    assert drained, "the old filter chain did not drain"
    load.wait(20)
    load.end()
    assert load.failures == []
    # Every answer, under either configuration (and the alias's), is in the
    # ledger once.
    all_in_ledger(stack, kid, load, extra=1)


def test_a_removed_listener_sends_what_it_has_queued(stack, lds, make_key):
    """Last in this module: the listener is gone after it."""
    if stack.chain == "native":
        pytest.skip("a destroyed native configuration can make no calls; it logs the reports it could not send")
    envoy, reconfigure = lds
    key = make_key()
    kid = key_id(stack, key)
    load = Load(openai_client(envoy.base_url, key))
    load.wait(20)
    reconfigure(None)
    removed, _ = wait_for(lambda: envoy.stats("listener_manager.listener_removed")
                          .get("listener_manager.listener_removed", 0) == 1, timeout=10)
    assert removed, "Envoy did not remove the listener"
    drained, _ = wait_for(lambda: envoy.stats("listener_manager.total_listeners_draining")
                          .get("listener_manager.total_listeners_draining", 1) == 0, timeout=15)
    assert drained, "the listener did not drain"
    load.end()
    assert load.failures == []
    all_in_ledger(stack, kid, load)


def answers_alias(client) -> bool:
    try:
        client.chat.completions.create(model=ALIAS, messages=MESSAGES)
        return True
    except openai.APIStatusError:
        return False
