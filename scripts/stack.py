#!/usr/bin/env python3
"""Run the Tollgate stack locally: mock provider, tollgate-sidecar and Envoy.

`make run` uses `python3 scripts/stack.py run`; the end-to-end tests import
`Stack` to start the same processes on free ports.

Two secrets per stack, taken from the environment when set there, else
generated: the master key for the sidecar's admin API
(TOLLGATE_MASTER_KEY) and the service token the filter in every Envoy sends
on the sidecar's /v1/* calls (TOLLGATE_SERVICE_TOKEN, given to the sidecar
and to every Envoy process, whose wasm VM reads it).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from deps import find_envoy

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "envoy" / "gateway.yaml"
TWO_STAGE = ROOT / "envoy" / "two-stage-chain.yaml"
CHAINS = ("single_stage", "two_stage", "native")
# Where cargo puts builds: $CARGO_TARGET_DIR when set (as cargo does), else target/.
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target").resolve()
WASM = TARGET / "wasm32-wasip1" / "release" / "tollgate.wasm"
# The single-stage floor as a native Envoy dynamic module (bench/floor-module).
FLOOR_MODULE = TARGET / "release" / "libtollgate_floor_module.so"
NATIVE = TARGET / "native" / "libtollgate.so"
SIDECAR = TARGET / "release" / "tollgate-sidecar"
MOCK = ROOT / "wasm-tests" / "mock_provider.py"
OTLP_RECEIVER = ROOT / "wasm-tests" / "otlp_receiver.py"

# Per provider cluster: the env var holding the real key, the secret it fills
# (credential_injector) and the key the mock provider expects instead.
PROVIDERS = {
    "provider_openai": {"name": "openai", "env": "OPENAI_API_KEY", "secret": "openai_api_key",
                        "mock_key": "mock-openai-key"},
    "provider_anthropic": {"name": "anthropic", "env": "ANTHROPIC_API_KEY", "secret": "anthropic_api_key",
                           "mock_key": "mock-anthropic-key"},
    "provider_gemini": {"name": "gemini", "env": "GEMINI_API_KEY", "secret": "gemini_api_key",
                        "mock_key": "mock-gemini-key"},
    # An OpenAI-compatible server on 127.0.0.1:8000, real when LOCAL_LLM_API_KEY is set.
    "provider_local": {"name": "local", "env": "LOCAL_LLM_API_KEY", "secret": None,
                       "mock_key": "mock-openai-key"},
    # Azure needs its resource endpoint too; its key reaches the VM by env.
    "provider_azure": {"name": "azure", "env": "AZURE_OPENAI_API_KEY", "secret": None,
                       "mock_key": "mock-azure-key", "endpoint_env": "AZURE_OPENAI_ENDPOINT"},
    # The gpt-4o-ha fallback chain's clusters: the attempt stage sets their keys from env.
    "ha_openai": {"name": "openai-ha", "env": "OPENAI_API_KEY", "secret": None, "mock_key": "mock-openai-key"},
    "ha_anthropic": {"name": "anthropic-ha", "env": "ANTHROPIC_API_KEY", "secret": None,
                     "mock_key": "mock-anthropic-key"},
    "ha_azure": {"name": "azure-ha", "env": "AZURE_OPENAI_API_KEY", "secret": None,
                 "mock_key": "mock-azure-key", "endpoint_env": "AZURE_OPENAI_ENDPOINT"},
}


# Ports handed out by this process, never handed out twice.
_HANDED_OUT: set[int] = set()


def ephemeral_start() -> int:
    """Where the kernel's range for outgoing connections' local ports starts."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port to listen on, below the kernel's ephemeral range: a port the
    kernel picked (bind to 0) can be taken by any outgoing connection (an
    Envoy's upstream, the sidecar's) before the process meant for it binds
    it, and Envoy then fails to start with "Address already in use"."""
    low, high = 20000, ephemeral_start()
    for _ in range(200):
        port = secrets.randbelow(max(high - low, 1)) + low
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def real_providers(env: dict) -> set[str]:
    """Clusters whose real credentials are present in `env`."""
    out = set()
    for cluster, p in PROVIDERS.items():
        if env.get(p["env"]) and (not p.get("endpoint_env") or env.get(p["endpoint_env"])):
            out.add(cluster)
    return out


def merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in overrides.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render(*, wasm: Path, listen_port: int, admin_port: int, sidecar_port: int, mock_port: int | None, otlp_port: int,
           real: set[str], plugin_overrides: dict | None = None, listen_address: str = "127.0.0.1",
           bare_cluster: str | None = None, floor_wasm: Path | None = None, floor_module: Path | None = None,
           chain: str = "single_stage", azure_host: str | None = None, customize=None) -> str:
    """The gateway config with ports filled in and non-real providers on the mock.

    `bare_cluster` drops the Tollgate filters and routes everything to that
    cluster: the same Envoy without Tollgate, for side-by-side benchmarks.
    `floor_wasm` runs that module (bench/floor-filter) in Tollgate's place,
    configured with `chain` and `plugin_overrides`.
    `floor_module` runs that shared object (bench/floor-module) in Tollgate's
    place as a native dynamic module: chain [floor, router], single stage only.
    `chain="two_stage"` swaps in the fallback chain of two-stage-chain.yaml.
    `azure_host` defaults to the host of $AZURE_OPENAI_ENDPOINT.
    `customize(config)` may change the rendered config dict last (tests)."""
    if azure_host is None:
        azure_endpoint = os.environ.get("AZURE_OPENAI_ENDPOINT", "")
        azure_host = azure_endpoint.split("://")[-1].strip("/") or "azure.invalid"
    text = TEMPLATE.read_text()
    values = {"ADMIN_PORT": admin_port, "LISTEN_PORT": listen_port, "LISTEN_ADDRESS": listen_address,
                        "SIDECAR_PORT": sidecar_port, "OTLP_PORT": otlp_port, "WASM_PATH": wasm, "AZURE_OPENAI_HOST": azure_host}
    for name, value in values.items():
        text = text.replace("${%s}" % name, str(value))
    config = yaml.safe_load(text)
    resources = config["static_resources"]
    for cluster in resources["clusters"]:
        p = PROVIDERS.get(cluster["name"])
        if p is None or cluster["name"] in real:
            continue
        if mock_port is None:
            raise SystemExit(f"no key for {p['name']} ({p['env']}) and no mock provider to route to")
        cluster["type"] = "STATIC"
        cluster.pop("dns_lookup_family", None)
        cluster.pop("transport_socket", None)
        # Each endpoint on the mock, keeping its metadata (the attempt
        # stage reads the provider and key from it) and weight.
        for locality in cluster["load_assignment"]["endpoints"]:
            locality["lb_endpoints"] = [
                {**lb, "endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": mock_port}}}}
                for lb in locality["lb_endpoints"]]
    mocked_secrets = {p["secret"]: p["mock_key"] for c, p in PROVIDERS.items() if c not in real and p["secret"]}
    for secret in resources.get("secrets", []):
        if secret["name"] in mocked_secrets:
            secret["generic_secret"]["secret"] = {"inline_string": mocked_secrets[secret["name"]]}
    hcm = http_connection_manager(resources)
    if chain == "two_stage":
        hcm["http_filters"] = two_stage_filters(hcm["http_filters"][0], wasm)
    elif chain == "native":
        hcm["http_filters"][0] = native_filter(hcm["http_filters"][0])
        without_relay(resources)
        for cluster in resources["clusters"]:
            for options in cluster.get("typed_extension_protocol_options", {}).values():
                options["http_filters"] = native_upstream_filters(options.get("http_filters", []))
    elif chain != "single_stage":
        raise ValueError(f"unknown chain {chain!r}: one of {', '.join(CHAINS)}")
    if bare_cluster or floor_wasm or floor_module:
        # Without Tollgate's request stage, no VM for its attempt and relay stages.
        resources["clusters"] = [c for c in resources["clusters"] if not has_wasm_upstream_filter(c)]
        without_relay(resources)
    if bare_cluster:
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.router"]
        # Only the plain route (the retry route serves fallback chains).
        vhost = hcm["route_config"]["virtual_hosts"][0]
        vhost["routes"] = vhost["routes"][-1:]
        route = vhost["routes"][0]["route"]
        route.pop("cluster_header")
        route["cluster"] = bare_cluster
    if floor_wasm:
        for f in hcm["http_filters"]:
            plugin = f["typed_config"].get("config")
            if plugin and "vm_config" in plugin:
                # The floor reads which chain it runs in and, from
                # plugin_overrides, which host calls it makes.
                plugin["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                           "value": json.dumps({"chain": chain, **(plugin_overrides or {})})}
                plugin["vm_config"] = {**plugin["vm_config"], "vm_id": "floor",
                                       "code": {"local": {"filename": str(floor_wasm)}}}
    if floor_module:
        if chain != "single_stage":
            raise ValueError("the native floor (floor_module) runs the single-stage chain only")
        router = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.router"]
        hcm["http_filters"] = [floor_module_filter(floor_module), *router]
    if plugin_overrides and not (floor_wasm or floor_module or bare_cluster):
        value = plugin_value(hcm["http_filters"][0])
        value["value"] = json.dumps(merge(json.loads(value["value"]), plugin_overrides))
    if customize:
        customize(config)
    return yaml.safe_dump(config, sort_keys=False)


def http_connection_manager(resources: dict) -> dict:
    """The gateway listener's HTTP connection manager in `static_resources`."""
    return resources["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def plugin_value(tollgate: dict) -> dict:
    """The StringValue holding Tollgate's JSON configuration in its filter,
    wasm or native."""
    typed = tollgate["typed_config"]
    return typed["filter_config"] if "filter_config" in typed else typed["config"]["configuration"]


DYNAMIC_MODULE_FILTER = "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
WASM_FILTER = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


def native_module() -> dict:
    """libtollgate.so, its stats named as the wasm filter's (wasmcustom.tollgate.*)."""
    return {"module": {"local": {"filename": str(NATIVE)}}, "metrics_namespace": "wasmcustom"}


def native_filter(single: dict) -> dict:
    """The single-stage wasm filter as the native dynamic module
    (libtollgate.so), with the same configuration."""
    return {"name": single["name"],
            "typed_config": {
                "@type": DYNAMIC_MODULE_FILTER,
                "dynamic_module_config": native_module(),
                "filter_name": "tollgate",
                "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": single["typed_config"]["config"]["configuration"]["value"]}}}


def native_attempt_filter() -> dict:
    """The attempt stage as the native module's upstream filter: it needs no
    configuration of its own (it uses the request stage's)."""
    return {"name": "tollgate-attempt",
            "typed_config": {
                "@type": DYNAMIC_MODULE_FILTER,
                "dynamic_module_config": native_module(),
                "filter_name": "attempt"}}


def native_upstream_filters(filters: list[dict]) -> list[dict]:
    """A fallback cluster's upstream filters with the native attempt stage
    in the place of the wasm one."""
    return [native_attempt_filter() if wasm_plugins(f) else f for f in filters]


def floor_module_filter(module: Path) -> dict:
    """bench/floor-module's shared object as an HTTP filter (Envoy's
    dynamic_modules extension, loaded from its file)."""
    return {"name": "tollgate-floor",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
                "dynamic_module_config": {"module": {"local": {"filename": str(module)}}},
                "filter_name": "floor"}}


def upstream_filters(cluster: dict) -> list[dict]:
    """The HTTP filters a cluster runs per attempt (HttpProtocolOptions.http_filters)."""
    options = cluster.get("typed_extension_protocol_options", {}).values()
    return [f for o in options for f in o.get("http_filters", [])]


def wasm_plugins(node) -> list[dict]:
    """The wasm plugin configurations (`config`) in a filter, also those
    nested in another's configuration (a matcher's)."""
    if isinstance(node, list):
        return [p for item in node for p in wasm_plugins(item)]
    if not isinstance(node, dict):
        return []
    if node.get("@type") == WASM_FILTER:
        return [node["config"]]
    return [p for value in node.values() for p in wasm_plugins(value)]


def has_wasm_upstream_filter(cluster: dict) -> bool:
    return bool(wasm_plugins(upstream_filters(cluster)))


def aggregated(cluster: dict) -> list[str]:
    """The clusters an aggregate cluster lists (none for another cluster)."""
    return cluster.get("cluster_type", {}).get("typed_config", {}).get("clusters", [])


def relay_clusters(resources: dict) -> set[str]:
    """The clusters whose endpoints are internal listeners (the relay's)."""
    return {c["name"] for c in resources["clusters"]
            for locality in c.get("load_assignment", {}).get("endpoints", [])
            for lb in locality["lb_endpoints"] if "envoy_internal_address" in lb["endpoint"]["address"]}


def without_relay(resources: dict) -> None:
    """Drops the relay listener (an internal listener, running the wasm
    relay stage), the relay clusters that reach it and the direct clusters
    over them: for runs whose request stage takes no direct cluster (the
    native module) or that have none (bare Envoy, the floors)."""
    resources["listeners"] = [l for l in resources["listeners"] if "internal_listener" not in l]
    relays = relay_clusters(resources)
    resources["clusters"] = [c for c in resources["clusters"]
                             if c["name"] not in relays and not relays.intersection(aggregated(c))]


def two_stage_filters(single: dict, wasm: Path) -> list:
    """two-stage-chain.yaml's filters, carrying the single-stage filter's
    configuration with "chain": "two_stage"."""
    filters = yaml.safe_load(TWO_STAGE.read_text().replace("${WASM_PATH}", str(wasm)))
    value = single["typed_config"]["config"]["configuration"]["value"]
    plugin = json.loads(value)
    plugin["chain"] = "two_stage"
    filters[0]["typed_config"]["config"]["configuration"]["value"] = json.dumps(plugin, indent=2)
    return filters


def wait_until(check, what: str, timeout: float = 20.0, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail}")
        try:
            if check():
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout}s")


def port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as r:
        return r.status == 200


class Envoy:
    """One Envoy process with a rendered gateway config."""

    def __init__(self, stack: "Stack", name: str, plugin_overrides: dict | None = None, listen_port: int = 0,
                 admin_port: int = 0, listen_address: str = "127.0.0.1", bare_cluster: str | None = None,
                 otlp_port: int | None = None, sidecar_port: int | None = None, floor_wasm: Path | None = None,
                 floor_module: Path | None = None, chain: str | None = None, config: str | None = None,
                 customize=None, args: tuple[str, ...] = ()):
        self.stack = stack
        self.args = args  # more of Envoy's command-line options
        self.name = name
        self.port = listen_port or free_port()
        self.admin_port = admin_port or free_port()
        self.config_path = stack.workdir / f"{name}.yaml"
        self.log_path = stack.workdir / f"{name}.log"
        # `config`: the caller's own, on these ports (the deploy tests run the manifests' configs).
        self.config_path.write_text(config if config is not None else render(
            wasm=stack.wasm, listen_port=self.port, admin_port=self.admin_port,
            sidecar_port=sidecar_port or stack.sidecar_port,
            mock_port=stack.mock_port, otlp_port=otlp_port or stack.otlp_port, real=stack.real, plugin_overrides=plugin_overrides,
            listen_address=listen_address, bare_cluster=bare_cluster, floor_wasm=floor_wasm,
            floor_module=floor_module, chain=chain or stack.chain, customize=customize))
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> "Envoy":
        # The filter authenticates its sidecar calls with the service token
        # (gateway.yaml lists the variable in the VM's host_env_keys).
        env = dict(os.environ, TOLLGATE_SERVICE_TOKEN=self.stack.service_token)
        for cluster, p in PROVIDERS.items():
            # Keys the VM reads (env auth): the mock's, unless real.
            if p["secret"] is None and cluster not in self.stack.real:
                env[p["env"]] = p["mock_key"]
        if "ha_openai" not in self.stack.real:
            # The second key of a pool, for the tests that add one.
            env["OPENAI_API_KEY_2"] = PROVIDERS["ha_openai"]["mock_key"] + "-2"
        envoy = find_envoy() or "envoy"
        cmd = [envoy, "-c", str(self.config_path), "--concurrency", str(self.stack.envoy_workers),
               "--disable-hot-restart", "-l", self.stack.envoy_log_level, "--log-path", str(self.log_path),
               "--file-flush-interval-msec", "200", *self.args]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_until(lambda: http_ok(f"http://127.0.0.1:{self.admin_port}/ready"), f"envoy {self.name}",
                   timeout=timeout, proc=self.proc, log=self.log_path)
        return self

    def stats(self, filter_: str = "") -> dict[str, int]:
        url = f"http://127.0.0.1:{self.admin_port}/stats?format=json&filter={filter_}"
        with urllib.request.urlopen(url, timeout=5) as r:
            data = json.load(r)
        return {s["name"]: s.get("value", 0) for s in data["stats"] if "value" in s}

    def stop(self):
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen | None):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Stack:
    """Mock provider + sidecar + one Envoy, on free ports unless given."""

    def __init__(self, workdir: Path, *, real: set[str] | None = None, ports: dict | None = None,
                 plugin_overrides: dict | None = None, envoy_workers: int = 1, envoy_log_level: str = "info",
                 listen_address: str = "127.0.0.1", otlp_receiver: bool = False,
                 mock_command: list[str] | None = None, sidecar_args: list[str] | None = None,
                 master_key: str | None = None, service_token: str | None = None, chain: str | None = None,
                 db: str | None = None):
        ports = ports or {}
        # The filter chain shape (CHAINS): TOLLGATE_CHAIN lets `make test`
        # run tests on the two-stage fallback too.
        self.chain = chain or os.environ.get("TOLLGATE_CHAIN") or "single_stage"
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.real = real or set()
        self.wasm = WASM
        # Given, else the environment's (README examples use $TOLLGATE_MASTER_KEY), else new.
        env_master = os.environ.get("TOLLGATE_MASTER_KEY")
        self.master_key = master_key or env_master or "tgm-" + secrets.token_urlsafe(24)
        self.master_key_generated = not (master_key or env_master)
        env_token = os.environ.get("TOLLGATE_SERVICE_TOKEN")
        self.service_token = service_token or env_token or secrets.token_urlsafe(32)
        self.service_token_generated = not (service_token or env_token)
        # A SQLite file of this run, or a `postgres://` URL.
        self.db = db or self.workdir / "tollgate.db"
        self.sidecar_port = ports.get("sidecar") or free_port()
        self.mock_port = None if self.real >= set(PROVIDERS) else (ports.get("mock") or free_port())
        # Where spans go: the test receiver when asked for, else a collector
        # the user may run on the OTLP/HTTP default port.
        self.otlp_port = ports.get("otlp") or (free_port() if otlp_receiver else 4318)
        self.otlp_receiver = otlp_receiver
        # The provider stand-in: the scripted mock by default, or e.g. the
        # fast benchmark mock; called with the port appended.
        self.mock_command = mock_command or [sys.executable, str(MOCK), "--port"]
        self.sidecar_args = sidecar_args or []
        self.otlp_proc = None
        self.envoy_workers = envoy_workers
        self.envoy_log_level = envoy_log_level
        self._envoy_args = dict(plugin_overrides=plugin_overrides, listen_port=ports.get("listen", 0),
                                admin_port=ports.get("admin", 0), listen_address=listen_address)
        self.mock_proc = self.sidecar_proc = None
        self.extra_sidecars: list[subprocess.Popen] = []
        self.envoys: list[Envoy] = []
        self.envoy: Envoy | None = None

    def start(self) -> "Stack":
        for path, what in [(self.wasm, "the wasm filter"), (SIDECAR, "tollgate-sidecar")]:
            if not path.exists():
                raise SystemExit(f"{path} is missing: build {what} first (make build)")
        if self.mock_port:
            log = open(self.workdir / "mock.log", "w")
            self.mock_proc = subprocess.Popen([*self.mock_command, str(self.mock_port)],
                                              stdout=log, stderr=subprocess.STDOUT)
            wait_until(lambda: port_open(self.mock_port), "mock provider", proc=self.mock_proc,
                       log=self.workdir / "mock.log")
        if self.otlp_receiver:
            log = open(self.workdir / "otlp.log", "w")
            self.otlp_proc = subprocess.Popen([sys.executable, str(OTLP_RECEIVER), "--port", str(self.otlp_port)],
                                              stdout=log, stderr=subprocess.STDOUT)
            wait_until(lambda: http_ok(f"http://127.0.0.1:{self.otlp_port}/__otlp/health"), "otlp receiver",
                       proc=self.otlp_proc, log=self.workdir / "otlp.log")
        # Rendered first: the sidecar checks teams against its residency pins.
        self.envoy = Envoy(self, "envoy", **self._envoy_args)
        self.start_sidecar()
        self.envoy.start()
        self.envoys.append(self.envoy)
        return self

    def add_envoy(self, name: str, **kwargs) -> Envoy:
        envoy = Envoy(self, name, **kwargs).start()
        self.envoys.append(envoy)
        return envoy

    def start_sidecar(self):
        self.sidecar_proc = self._sidecar("sidecar", self.sidecar_port)

    def add_sidecar(self, name: str, args: tuple[str, ...] = ()) -> int:
        """Another sidecar on the same database (a second gateway replica),
        with `args` after the stack's own `serve` arguments; returns its
        port, for `add_envoy(..., sidecar_port=)`."""
        port = free_port()
        self.extra_sidecars.append(self._sidecar(name, port, args))
        return port

    def _sidecar(self, name: str, port: int, args: tuple[str, ...] = ()) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "a")
        env = dict(os.environ, TOLLGATE_MASTER_KEY=self.master_key,
                   TOLLGATE_SERVICE_TOKEN=self.service_token, RUST_LOG="info")
        if self.envoy:
            # The gateway's residency pins, to check team and key model lists.
            env["TOLLGATE_GATEWAY_CONFIG"] = str(self.envoy.config_path)
        proc = subprocess.Popen(
            [str(SIDECAR), "--db", str(self.db), "serve", "--listen", f"127.0.0.1:{port}", *self.sidecar_args,
             *args],
            # In the run's directory: on PostgreSQL the audit key is made in
            # the working directory (tollgate-audit.key).
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), f"tollgate-sidecar {name}",
                   proc=proc, log=self.workdir / f"{name}.log")
        return proc

    def stop_sidecar(self):
        stop_process(self.sidecar_proc)

    def stop(self):
        for envoy in self.envoys:
            envoy.stop()
        stop_process(self.sidecar_proc)
        for proc in self.extra_sidecars:
            stop_process(proc)
        stop_process(self.mock_proc)
        stop_process(self.otlp_proc)

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:
        """Calls the sidecar admin API with the master key."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.sidecar_port}{path}", data=data, method=method,
                                     headers={"authorization": f"Bearer {self.master_key}",
                                              "content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.load(r)

    def sidecar(self, method: str, path: str, body: dict | None = None,
                token: str | None = None) -> tuple[int, dict | None]:
        """A raw sidecar call with `token` (if any) as the bearer token, as the
        filter (service token) or an intruder would make it: (status, JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        req = urllib.request.Request(f"http://127.0.0.1:{self.sidecar_port}{path}", data=data, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        return status, (json.loads(raw) if raw else None)

    def cli(self, *args: str) -> str:
        out = subprocess.run([str(SIDECAR), "--db", str(self.db), *args], check=True, capture_output=True,
                             text=True, cwd=self.workdir)
        return out.stdout

    def mock(self, method: str, path: str, body: dict | None = None):
        return self._call(self.mock_port, method, path, body)

    def otlp(self, method: str, path: str, body: dict | None = None):
        return self._call(self.otlp_port, method, path, body)

    def _call(self, port: int, method: str, path: str, body: dict | None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            raw = r.read()
            return json.loads(raw) if raw else None


def run(args):
    """`make run`: start everything on fixed ports, make a first key, wait."""
    real = real_providers(os.environ)
    workdir = ROOT / "build" / "run"
    stack = Stack(workdir, real=real, envoy_workers=args.workers, envoy_log_level="warning", chain=args.chain,
                  ports={"listen": args.port, "admin": args.admin_port, "sidecar": args.sidecar_port,
                         "mock": args.mock_port})
    stack.start()
    try:
        created = json.loads(stack.cli("keys", "create", "--team", "default", "--name", "make-run", "--json"))
        print_welcome(stack, created["key"], real)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping Tollgate...")
        stack.stop()


def secrets_text(stack: Stack) -> str:
    """Which master key and service token this run uses. A generated master
    key is shown (the admin API needs it); one from the environment never is."""
    if stack.master_key_generated:
        master = (f"{stack.master_key}  (generated for this run; for the README's examples:\n"
                  f"               export TOLLGATE_MASTER_KEY={stack.master_key} )")
    else:
        master = "the one in $TOLLGATE_MASTER_KEY"
    if stack.service_token_generated:
        token = "generated for this run, shared by Envoy and the sidecar (set TOLLGATE_SERVICE_TOKEN to choose one)"
    else:
        token = "the one in $TOLLGATE_SERVICE_TOKEN"
    return f"  master key   {master}\n  service token {token}"


def print_welcome(stack: Stack, key: str, real: set[str]):
    base = stack.envoy.base_url
    print("\nTollgate is running.\n")
    for cluster, p in PROVIDERS.items():
        where = "real provider" if cluster in real else f"MOCK provider on 127.0.0.1:{stack.mock_port}"
        hint = "" if cluster in real else f" (set {p['env']} to use the real one)"
        print(f"  {p['name']:<10} -> {where}{hint}")
    print(f"""
  gateway      {base}
  envoy admin  http://127.0.0.1:{stack.envoy.admin_port}
  sidecar      http://127.0.0.1:{stack.sidecar_port}
  console      http://127.0.0.1:{stack.sidecar_port}/console/  (sign in with the master key)
{secrets_text(stack)}
  files        {stack.workdir}

Your first key (shown once): {key}

OpenAI SDK:
  from openai import OpenAI
  client = OpenAI(base_url="{base}/v1", api_key="{key}")
  print(client.chat.completions.create(model="gpt-5.4-mini",
        messages=[{{"role": "user", "content": "Hello"}}]).choices[0].message.content)

Anthropic SDK:
  from anthropic import Anthropic
  client = Anthropic(base_url="{base}", api_key="{key}")
  print(client.messages.create(model="claude-haiku-4-5", max_tokens=200,
        messages=[{{"role": "user", "content": "Hello"}}]).content[0].text)

More keys: target/release/tollgate-sidecar --db {stack.db} keys create --team ml --models 'gpt-4o*,claude-*'
Press Ctrl-C to stop.""", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="start mock/sidecar/Envoy and print a first key")
    r.add_argument("--port", type=int, default=10000)
    r.add_argument("--admin-port", type=int, default=9901)
    r.add_argument("--sidecar-port", type=int, default=8790)
    r.add_argument("--mock-port", type=int, default=18000)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--chain", choices=CHAINS, default="single_stage",
                   help="the filter chain: one wasm stage (Envoy >= 1.35), the two-stage fallback, or the "
                        "native dynamic module (Envoy 1.40)")
    args = parser.parse_args()
    if args.command == "run":
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        run(args)


if __name__ == "__main__":
    main()
