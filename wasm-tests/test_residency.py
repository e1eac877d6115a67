"""Data residency: the shipped config pins team `eu-legal` to `eu`, where
only the Azure deployment serves, and team `us-public-sector` to `us`. A
request to a model served elsewhere is refused in the client's format
before any byte leaves; on the fallback chain targets outside the pin are
skipped, and the ones inside still fall back on their region's cluster; the audit log records the region that
served; a pin no model can serve stops Envoy at start-up."""

import json
import os
import subprocess

import anthropic
import openai
import pytest

from conftest import anthropic_client, openai_client, rejected_config
from stack import SIDECAR, plugin_value
from test_budgets import settled

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def eu(stack):
    made = stack.admin("POST", "/admin/keys", {"team": "eu-legal"})
    return made["key"], made["id"]


def provider_requests(stack) -> list[dict]:
    return [r for r in stack.mock("GET", "/__mock/requests") if not r["path"].startswith("/__")]


def test_a_target_outside_the_pin_is_refused_before_anything_leaves(stack, eu):
    key, _ = eu
    with pytest.raises(openai.PermissionDeniedError) as err:
        openai_client(stack.envoy.base_url, key).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert err.value.body["code"] == "region_not_allowed"
    with pytest.raises(anthropic.PermissionDeniedError) as err:
        anthropic_client(stack.envoy.base_url, key).messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)
    assert err.value.body["error"]["type"] == "permission_error"
    assert provider_requests(stack) == [], "nothing reached a provider"


def test_the_pinned_region_serves_and_the_chain_skips_targets_outside_it(stack, eu, key):
    pinned, _ = eu
    client = openai_client(stack.envoy.base_url, pinned)
    assert client.chat.completions.create(model="azure-gpt-4o", messages=MESSAGES).choices[0].message.content
    stack.mock("DELETE", "/__mock/requests")
    # gpt-4o-ha falls back from OpenAI (us) to Azure (eu) to Anthropic (us): only Azure may serve.
    reply = client.chat.completions.create(model="gpt-4o-ha", messages=MESSAGES)
    assert reply.choices[0].message.content
    paths = [r["path"] for r in provider_requests(stack)]
    assert len(paths) == 1 and paths[0].startswith("/openai/deployments/gpt-4o/"), paths
    # An unpinned team's request takes the chain's first target as before.
    stack.mock("DELETE", "/__mock/requests")
    openai_client(stack.envoy.base_url, key).chat.completions.create(model="gpt-4o-ha", messages=MESSAGES)
    assert [r["path"] for r in provider_requests(stack)] == ["/v1/chat/completions"]


def test_a_pinned_request_falls_back_among_the_targets_in_its_region(stack):
    """Team us-public-sector is pinned to `us`: gpt-4o-ha's US targets
    (OpenAI, then Anthropic) keep falling back on their own aggregate
    cluster (region_clusters.us), and the Azure (eu) target is never tried."""
    key = stack.admin("POST", "/admin/keys", {"team": "us-public-sector"})["key"]
    stack.mock("DELETE", "/__mock/faults")
    stack.mock("DELETE", "/__mock/requests")
    stack.mock("POST", "/__mock/faults", {"fault": "429", "count": 1, "flavor": "openai"})
    try:
        raw = openai_client(stack.envoy.base_url, key).chat.completions.with_raw_response.create(
            model="gpt-4o-ha", messages=MESSAGES)
    finally:
        stack.mock("DELETE", "/__mock/faults")
    assert raw.headers["x-tollgate-target"] == "anthropic-ha/claude-sonnet-4-6"
    assert raw.parse().choices[0].message.content
    assert [r["path"] for r in provider_requests(stack)] == ["/v1/chat/completions", "/v1/messages"]


def settings_changed(change):
    """A customize hook for the rendered config: `change(settings)` on the
    filter's settings."""
    def customize(config):
        hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        plugin = plugin_value(hcm["http_filters"][0])
        settings = json.loads(plugin["value"])
        change(settings)
        plugin["value"] = json.dumps(settings)
    return customize


def test_a_pin_that_leaves_a_chain_without_its_region_cluster_stops_envoy(tmp_path):
    def without_region_clusters(settings):
        for model in settings["models"]:
            model.pop("region_clusters", None)

    log = rejected_config(tmp_path, settings_changed(without_region_clusters))
    assert "residency.teams.us-public-sector: 2 of the 3 targets of model `gpt-4o-ha` serve from us" in log, log


def test_the_audit_log_records_the_region_that_served_and_each_refusal(stack, eu):
    key, kid = eu
    client = openai_client(stack.envoy.base_url, key)
    client.chat.completions.create(model="gpt-4o-ha", messages=MESSAGES)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    rows = settled(stack, kid, 2)
    assert len(rows) == 2, "the answer and the refusal are both in the ledger"
    stack.cli("audit", "checkpoint")
    entries = {r["status"]: json.loads(stack.cli("audit", "prove", "--request-id", r["request_id"]))["entry"]
               for r in rows}
    assert (entries[200]["region"], entries[200]["provider"], entries[200]["decision"]) == ("eu", "azure", "forwarded")
    refused = entries[403]
    assert (refused["decision"], refused["cost_usd"], refused["provider"]) == ("refused", 0.0, "openai")


def test_a_pin_no_model_serves_stops_envoy_at_start_up(tmp_path):
    def typo(settings):
        settings["residency"] = {"teams": {"eu-legal": ["ue"]}}

    assert "residency.teams.eu-legal: no model is served from ue" in rejected_config(tmp_path, settings_changed(typo))


def test_a_pinned_team_may_not_be_left_without_a_model_in_its_region(stack, tmp_path):
    """The sidecar reads the gateway's pins (TOLLGATE_GATEWAY_CONFIG): team
    eu-legal, pinned to eu, may not be given only models served elsewhere,
    nor one of its keys; `serve` does not start with such a team in the
    database, and `residency check` names it."""
    key = stack.admin("POST", "/admin/keys", {"team": "eu-legal"})
    status, body = stack.sidecar("PATCH", "/admin/teams/eu-legal", {"models": ["gpt-5*"]}, token=stack.master_key)
    assert status == 400, body
    assert "team eu-legal is pinned to eu where the gateway serves" in body["error"]["message"], body
    status, body = stack.sidecar("PATCH", f"/admin/keys/{key['id']}", {"models": ["claude-*"]},
                                 token=stack.master_key)
    assert status == 400 and f"key {key['id']} is pinned to eu" in body["error"]["message"], body
    # A model served in the EU is fine, by name or pattern.
    stack.admin("PATCH", "/admin/teams/eu-legal", {"models": ["azure-*", "gpt-4o*"]})
    stack.admin("PATCH", "/admin/teams/eu-legal", {"models": []})

    # A team written while no sidecar knew the pins: the check finds it, and serve refuses to start.
    db = str(tmp_path / "unchecked.db")
    subprocess.run([str(SIDECAR), "--db", db, "teams", "create", "eu-legal", "--models", "gpt-5*"], check=True,
                   capture_output=True)
    config = str(stack.envoy.config_path)
    check = subprocess.run([str(SIDECAR), "--db", db, "--gateway-config", config, "residency", "check"],
                           capture_output=True, text=True)
    assert check.returncode == 1 and "team eu-legal is pinned to eu" in check.stdout, check.stdout + check.stderr
    serve = subprocess.run([str(SIDECAR), "--db", db, "--gateway-config", config, "serve", "--listen", "127.0.0.1:1"],
                           capture_output=True, text=True, timeout=30,
                           env={**os.environ, "TOLLGATE_MASTER_KEY": "m" * 40, "TOLLGATE_SERVICE_TOKEN": "t" * 40})
    assert serve.returncode != 0 and "would refuse every request of these teams" in serve.stderr, serve.stderr
