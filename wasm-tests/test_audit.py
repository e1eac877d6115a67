"""The audit log end to end: requests through Envoy (forwarded, blocked by a
guardrail, answered from the cache) become entries of the sidecar's log
with HMACs of the exact bodies the client sent and got; the sidecar's
`audit` commands verify the log, prove an entry, and verify an exported
copy in another directory with only the public key."""

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest

from test_budgets import ledger, settled
from stack import SIDECAR


@pytest.fixture(scope="module")
def audited(stack):
    """An Envoy whose usage reports carry body digests, batches sent fast."""
    return stack.add_envoy("envoy-audit", plugin_overrides={
        "key_cache_ttl_ms": 60000, "audit": {"body_digests": True},
        "budgets": {"flush_interval_ms": 100}})


def post(base_url: str, key: str, body: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(f"{base_url}/v1/chat/completions", data=body, method="POST",
                                 headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_requests_are_logged_with_hmacs_of_their_bodies_and_the_log_verifies(stack, audited, tmp_path):
    made = stack.admin("POST", "/admin/keys", {"team": "faq-bot"})
    key, kid = made["key"], made["id"]
    prompt = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": f"echo: audit {uuid.uuid4()}"}]})
    status, answer = post(audited.base_url, key, prompt.encode())
    assert status == 200
    time.sleep(0.5)
    status, hit = post(audited.base_url, key, prompt.encode())
    assert status == 200 and hit == answer
    blocked = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "key AKIAIOSFODNN7EXAMPLE"}]})
    status, refusal = post(audited.base_url, key, blocked.encode())
    assert status == 400

    rows = settled(stack, kid, 3)
    assert len(rows) == 3, "three requests settled"
    stack.cli("audit", "checkpoint")

    def proof(request_id: str) -> dict:
        return json.loads(stack.cli("audit", "prove", "--request-id", request_id))

    def hmac(text: bytes) -> str:
        path = tmp_path / "body"
        path.write_bytes(text)
        return stack.cli("audit", "hmac", "--team", "faq-bot", "--text-file", str(path)).strip()

    by_kind = {}
    for row in rows:
        entry = proof(row["request_id"])["entry"]
        kind = "hit" if row["cache_hit"] else "blocked" if not row["forwarded"] else "forwarded"
        by_kind[kind] = entry
    assert by_kind["forwarded"]["decision"] == "forwarded"
    assert by_kind["blocked"]["decision"] == "blocked"
    # The exact bytes the client sent and got, and nothing else, match.
    assert by_kind["forwarded"]["request_hmac"] == hmac(prompt.encode())
    assert by_kind["forwarded"]["response_hmac"] == hmac(answer)
    assert by_kind["hit"]["response_hmac"] == hmac(answer)
    assert by_kind["blocked"]["request_hmac"] == hmac(blocked.encode())
    assert by_kind["blocked"]["response_hmac"] == hmac(refusal)
    assert by_kind["forwarded"]["request_hmac"] != hmac(prompt.encode() + b" ")

    out = subprocess.run([str(SIDECAR), "--db", str(stack.db), "audit", "verify"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.splitlines()[-1].startswith("OK"), out.stdout + out.stderr

    # Copied to "another machine": a directory with only the export and the public key.
    public_key = stack.cli("audit", "public-key").strip()
    elsewhere = tmp_path / "auditor"
    elsewhere.mkdir()
    stack.cli("audit", "export", "--out", str(elsewhere / "log.jsonl"))
    proof_file = elsewhere / "proof.json"
    proof_file.write_text(json.dumps(proof(by_kind["forwarded"]["request_id"])))
    sidecar = elsewhere / "tollgate-sidecar"
    shutil.copy(SIDECAR, sidecar)
    for args in (["audit", "verify", "--from", "log.jsonl", "--public-key", public_key],
                 ["audit", "check-proof", "--proof", "proof.json", "--public-key", public_key]):
        out = subprocess.run([str(sidecar), "--db", "absent.db", *args], cwd=elsewhere, capture_output=True, text=True)
        assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr
    assert not (elsewhere / "absent.db").exists(), "the auditor's copy needs no database"


def logged_entries(stack, tmp_path) -> list[dict]:
    """Every entry of the log, from an export."""
    out = tmp_path / "log.jsonl"
    stack.cli("audit", "export", "--out", str(out))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    return [json.loads(line["body"]) for line in lines if "body" in line]


def test_refusals_are_logged_without_a_ledger_row(stack, audited, tmp_path):
    """A bad key, a model the key may not use and a budget refusal each
    leave a `refused` entry with the error code, and no ledger row."""
    start = int(time.time()) - 1
    team = f"audit-refusals-{uuid.uuid4().hex[:8]}"
    scoped = stack.admin("POST", "/admin/keys", {"team": team, "models": ["claude-*"]})
    capped = stack.admin("POST", "/admin/keys", {"team": team})
    stack.admin("POST", "/admin/budgets", {"scope": "key", "scope_id": capped["id"], "kind": "requests",
                                           "limit": 1, "period": "daily", "mode": "hard"})
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "echo: hi"}]}).encode()
    assert post(audited.base_url, f"sk-not-a-key-{uuid.uuid4().hex}", body)[0] == 401
    assert post(audited.base_url, scoped["key"], body)[0] == 403
    assert post(audited.base_url, capped["key"], body)[0] == 200
    assert post(audited.base_url, capped["key"], body)[0] == 429

    def ours(entries):
        return [e for e in entries if e["kind"] == "request" and (
            e.get("team") == team or (e.get("reason") == "invalid_api_key" and e["ts"] >= start))]

    deadline = time.time() + 15
    while True:
        found = ours(logged_entries(stack, tmp_path))
        if len([e for e in found if e["decision"] == "refused"]) >= 3 or time.time() > deadline:
            break
        time.sleep(0.3)
    refused = {e["reason"]: e for e in found if e["decision"] == "refused"}
    assert set(refused) == {"invalid_api_key", "model_not_allowed", "budget_exceeded"}, found
    assert "key_id" not in refused["invalid_api_key"] and refused["invalid_api_key"]["status"] == 401
    assert refused["model_not_allowed"]["key_id"] == scoped["id"]
    assert refused["model_not_allowed"]["model"] == "gpt-4o"
    assert refused["budget_exceeded"]["key_id"] == capped["id"]
    assert refused["budget_exceeded"]["status"] == 429 and refused["budget_exceeded"]["cost_usd"] == 0
    assert [e["decision"] for e in found if e.get("key_id") == capped["id"]].count("forwarded") == 1
    # The ledger has the one forwarded request only.
    assert len(settled(stack, capped["id"], 1)) == 1
    assert not ledger(stack, scoped["id"])
