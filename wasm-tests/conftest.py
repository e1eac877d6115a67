"""Fixtures: one stack (mock provider + tollgate-sidecar + Envoy with the
built .wasm) per test session, and helpers to make keys and SDK clients."""

import os
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import openai
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from deps import find_envoy  # noqa: E402
from stack import WASM, Stack, free_port, render  # noqa: E402

# Short so the revocation test runs fast; the shipped default is 10 s.
CACHE_TTL_MS = 1500


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("stack"), otlp_receiver=True,
              plugin_overrides={"key_cache_ttl_ms": CACHE_TTL_MS, "tracing": {"flush_interval_ms": 100}})
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def fail_open(stack):
    """A second Envoy on the same sidecar and mock, failing open."""
    return stack.add_envoy("envoy-fail-open", plugin_overrides={
        "key_cache_ttl_ms": CACHE_TTL_MS, "sidecar": {"failure_mode": "open"}})


@pytest.fixture
def make_key(stack):
    def make(**fields) -> str:
        return stack.admin("POST", "/admin/keys", {"team": "e2e", **fields})["key"]
    return make


@pytest.fixture
def key(make_key) -> str:
    return make_key()


@pytest.fixture(autouse=True)
def clear_mock(stack):
    stack.mock("DELETE", "/__mock/requests")
    yield


def openai_client(base_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0, timeout=20)


def anthropic_client(base_url: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=20)


def wait_for(check, timeout: float, step: float = 0.1):
    """Polls `check` until it returns a truthy value; returns (value, seconds)."""
    start = time.monotonic()
    while True:
        value = check()
        elapsed = time.monotonic() - start
        if value or elapsed > timeout:
            return value, elapsed
        time.sleep(step)


def rejected_config(tmp_path: Path, customize) -> str:
    """Renders the gateway config changed by `customize(config)`, checks
    that `envoy --mode validate` refuses it, and returns Envoy's log."""
    path = tmp_path / "broken.yaml"
    path.write_text(render(wasm=WASM, listen_port=free_port(), admin_port=free_port(), sidecar_port=1,
                           mock_port=1, otlp_port=1, real=set(), customize=customize))
    out = subprocess.run([find_envoy() or "envoy", "--mode", "validate", "-c", str(path)], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "TOLLGATE_SERVICE_TOKEN": "t" * 40})
    assert out.returncode != 0
    return out.stdout + out.stderr
