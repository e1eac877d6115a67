"""Virtual keys: missing, unknown, revoked, deactivated, expired, and model scope."""

import time

import anthropic
import openai
import pytest

from conftest import CACHE_TTL_MS, anthropic_client, openai_client, wait_for

MESSAGES = [{"role": "user", "content": "hi"}]


def chat(stack, key, model="gpt-4o-mini"):
    return openai_client(stack.envoy.base_url, key).chat.completions.create(model=model, messages=MESSAGES)


def test_missing_key_is_401_in_each_format(stack):
    import urllib.error
    import urllib.request
    for path, kind in [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")]:
        req = urllib.request.Request(f"{stack.envoy.base_url}{path}", data=b"{}", method="POST",
                                     headers={"content-type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 401
        import json
        body = json.loads(err.value.read())
        if kind == "openai":
            assert body["error"]["code"] == "invalid_api_key"
        else:
            assert body["type"] == "error" and body["error"]["type"] == "authentication_error"


def test_unknown_key(stack):
    with pytest.raises(openai.AuthenticationError) as err:
        chat(stack, "tg-not-a-real-key-0000000000000000000000000")
    assert "not recognised" in str(err.value)
    with pytest.raises(anthropic.AuthenticationError):
        anthropic_client(stack.envoy.base_url, "tg-nope").messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)
    assert stack.mock("GET", "/__mock/requests") == []


def test_revoked_key_stops_within_cache_ttl(stack, key):
    key_id = next(k["id"] for k in stack.admin("GET", "/admin/keys")["keys"] if key.startswith(k["key_prefix"]))
    chat(stack, key)  # now cached as valid
    stack.admin("POST", f"/admin/keys/{key_id}/revoke")

    def refused():
        try:
            chat(stack, key)
            return False
        except openai.AuthenticationError as e:
            return "revoked" in str(e)

    stopped, elapsed = wait_for(refused, timeout=CACHE_TTL_MS / 1000 + 2)
    assert stopped, "revoked key still works"
    assert elapsed <= CACHE_TTL_MS / 1000 + 0.5


def test_deactivated_then_activated(stack, key):
    key_id = next(k["id"] for k in stack.admin("GET", "/admin/keys")["keys"] if key.startswith(k["key_prefix"]))
    stack.admin("POST", f"/admin/keys/{key_id}/deactivate")
    with pytest.raises(openai.AuthenticationError) as err:
        chat(stack, key)
    assert "deactivated" in str(err.value)
    stack.admin("POST", f"/admin/keys/{key_id}/activate")
    works, _ = wait_for(lambda: _works(stack, key), timeout=CACHE_TTL_MS / 1000 + 2)
    assert works


def _works(stack, key):
    try:
        chat(stack, key)
        return True
    except openai.AuthenticationError:
        return False


def test_expired_key(stack, make_key):
    key = make_key(expires_at=int(time.time()) + 2)
    chat(stack, key)  # cached valid, but the cache honours expires_at
    time.sleep(2.2)
    with pytest.raises(openai.AuthenticationError) as err:
        chat(stack, key)
    assert "expired" in str(err.value)


def test_model_not_allowed(stack, make_key):
    claude_only = make_key(models=["claude-*"])
    with pytest.raises(openai.PermissionDeniedError) as err:
        chat(stack, claude_only, model="gpt-4o")
    assert "gpt-4o" in str(err.value)
    gpt_only = make_key(models=["gpt-4o*"])
    with pytest.raises(anthropic.PermissionDeniedError):
        anthropic_client(stack.envoy.base_url, gpt_only).messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)
    assert chat(stack, gpt_only, model="gpt-4o-mini").choices[0].message.content
    assert stack.mock("GET", "/__mock/requests")[-1]["body"]["model"] == "gpt-4o-mini"


def test_team_models_restrict_keys(stack):
    stack.admin("POST", "/admin/teams", {"name": "claude-team", "models": ["claude-*"]})
    key = stack.admin("POST", "/admin/keys", {"team": "claude-team"})["key"]
    with pytest.raises(openai.PermissionDeniedError):
        chat(stack, key, model="gpt-4o")


def test_cli_created_key_works(stack):
    import json
    created = json.loads(stack.cli("keys", "create", "--team", "cli", "--models", "gpt-4o*,claude-*", "--json"))
    assert chat(stack, created["key"]).choices[0].message.content


def test_a_body_that_arrives_during_the_key_check_waits_for_it(stack, make_key):
    """The sidecar is frozen while a whole request with an uncached key
    arrives, so the body callbacks run while the key check is pending: the
    request must wait for the verdict (letting the body through there would
    send it upstream unchecked)."""
    import os
    import signal
    from concurrent.futures import ThreadPoolExecutor
    good = make_key()
    pid = stack.sidecar_proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(2) as pool:
            bad = pool.submit(chat, stack, "tg-frozen-sidecar-unknown-key-000000000000000")
            ok = pool.submit(chat, stack, good)
            time.sleep(0.4)
            assert not bad.done() and not ok.done(), "answered before the key check"
            os.kill(pid, signal.SIGCONT)
            with pytest.raises(openai.AuthenticationError):
                bad.result(timeout=10)
            assert ok.result(timeout=10).choices
    finally:
        os.kill(pid, signal.SIGCONT)
    sent = stack.mock("GET", "/__mock/requests")
    assert len(sent) == 1, sent
