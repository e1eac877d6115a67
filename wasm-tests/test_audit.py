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

from test_budgets import settled
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
