"""The sidecar's filter endpoints (/v1/*) take only the service token the
stack gives the sidecar and every Envoy: another process on the host, without
it or with the master key, can neither probe key hashes, hold budget nor
forge settlements."""

import hashlib
import uuid
from pathlib import Path

import pytest


@pytest.fixture
def victim(stack):
    """A fresh key with a lifetime spend budget, so nothing else touches them."""
    key = stack.admin("POST", "/admin/keys", {"team": "auth-e2e"})
    budget = stack.admin("POST", "/admin/budgets", {
        "scope": "key", "scope_id": key["id"], "kind": "spend", "limit": 1000, "period": "lifetime"})
    return key, budget


def filter_calls(key: dict, request_id: str) -> list[tuple[str, dict]]:
    """Each /v1/* call as the filter makes it, for `key`."""
    report = {
        "request_id": request_id, "reservation_id": None, "key_id": key["id"], "team": "auth-e2e",
        "user": None, "model": "gpt-4o", "upstream_model": "gpt-4o", "provider": "openai",
        "api": "chat_completions", "input_tokens": 1_000_000, "output_tokens": 1_000_000,
        "cached_tokens": 0, "reasoning_tokens": 0, "status": 200, "latency_ms": 1,
        "estimated": False, "stream": False, "guardrail_events": [], "ts": 1_800_000_000,
    }
    return [
        ("/v1/authorize", {"key_hash": hashlib.sha256(key["key"].encode()).hexdigest()}),
        ("/v1/reserve", {"request_id": request_id, "key_id": key["id"], "team": "auth-e2e", "user": None,
                         "model": "gpt-4o", "upstream_model": "gpt-4o", "provider": "openai",
                         "estimated_input_tokens": 100_000, "max_output_tokens": 100_000}),
        ("/v1/settle", report),
        ("/v1/settle/batch", {"reports": [report]}),
    ]


def ledger_of(stack, key_id: str) -> list[dict]:
    return stack.admin("GET", f"/admin/usage/requests?key_id={key_id}&limit=1000")["requests"]


@pytest.mark.parametrize("who", ["no token", "wrong token", "master key"])
def test_forged_filter_calls_are_refused_and_change_nothing(stack, victim, who):
    key, budget = victim
    token = {"no token": None, "wrong token": "forged-" + "x" * 40, "master key": stack.master_key}[who]
    request_id = f"forged-{uuid.uuid4().hex}"
    for path, body in filter_calls(key, request_id):
        status, answer = stack.sidecar("POST", path, body, token=token)
        assert status == 401, (who, path, answer)
        assert answer["error"]["type"] == "unauthorized", answer
        assert "valid" not in answer and "allowed" not in answer
    assert ledger_of(stack, key["id"]) == []
    everything = stack.admin("GET", "/admin/usage/requests?limit=100000")["requests"]
    assert request_id not in {r["request_id"] for r in everything}
    b = stack.admin("GET", f"/admin/budgets/{budget['id']}")
    assert (b["used"], b["reserved"]) == (0, 0), b


def test_the_stacks_service_token_opens_the_filter_endpoints_only(stack, victim):
    """The control for the test above: the same calls with the token work
    (and do change the ledger), and the token is no admin credential."""
    key, budget = victim
    answers = {path: stack.sidecar("POST", path, body, token=stack.service_token)
               for path, body in filter_calls(key, f"real-{uuid.uuid4().hex}")}
    assert all(status == 200 for status, _ in answers.values()), answers
    assert answers["/v1/authorize"][1]["valid"] is True
    assert answers["/v1/reserve"][1]["allowed"] is True
    assert answers["/v1/settle/batch"][1]["results"][0]["duplicate"] is True
    assert len(ledger_of(stack, key["id"])) == 1
    assert stack.admin("GET", f"/admin/budgets/{budget['id']}")["used"] > 0
    status, answer = stack.sidecar("GET", "/admin/keys", token=stack.service_token)
    assert status == 401, answer


def test_every_envoy_gets_the_service_token(stack):
    """The filter reads TOLLGATE_SERVICE_TOKEN in its VM (gateway.yaml's
    host_env_keys); the stack must hand it to every Envoy process."""
    assert len(stack.service_token) >= 32
    for envoy in [e for e in stack.envoys if e.proc.poll() is None]:
        environ = Path(f"/proc/{envoy.proc.pid}/environ")
        if not environ.exists():
            pytest.skip("no /proc on this system")
        entries = environ.read_bytes().split(b"\0")
        assert f"TOLLGATE_SERVICE_TOKEN={stack.service_token}".encode() in entries, envoy.name
