"""The native floor (bench/floor-module, `make bench`'s (fln)): Envoy loads
the shared object as a dynamic module in Tollgate's place, and a request
reaches the cluster the module names in x-tollgate-cluster, on the :path it
sets, with its whole body, whether the body comes in one piece or in chunks
the module has Envoy buffer. Setting the header in the body hook only
routes because the module clears the route cache: Envoy picked the route
(with no cluster) from the headers as they came."""

import http.client
import json
import time

import pytest

from stack import FLOOR_MODULE

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]}
PROVIDER_CLUSTERS = ("provider_openai", "provider_anthropic", "provider_gemini", "provider_azure", "provider_local")


@pytest.fixture(scope="module")
def floor(stack):
    if not FLOOR_MODULE.exists():
        pytest.fail(f"{FLOOR_MODULE} is missing: make build builds it "
                    "(cargo build --release -p tollgate-floor-module)")
    envoy = stack.add_envoy("envoy-floor-native", floor_module=FLOOR_MODULE, chain="single_stage")
    yield envoy
    # Stopped: it runs no wasm VM for test_zz_vm_health to look at.
    envoy.stop()


def upstream_requests(envoy) -> dict[str, int]:
    stats = envoy.stats("upstream_rq_total")
    return {c: stats.get(f"cluster.{c}.upstream_rq_total", 0) for c in PROVIDER_CLUSTERS}


def post(envoy, path: str, chunks: list[bytes] | None, pause: float = 0.0) -> tuple[int, bytes]:
    """POSTs `chunks` as one body (Content-Length) or, with a pause, as
    separate chunks of a chunked body; None sends headers only."""
    conn = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=10)
    try:
        if chunks is None:
            conn.request("POST", path)
        elif not pause:
            conn.request("POST", path, body=b"".join(chunks), headers={"content-type": "application/json"})
        else:
            conn.putrequest("POST", path)
            conn.putheader("content-type", "application/json")
            conn.putheader("transfer-encoding", "chunked")
            conn.endheaders()
            for chunk in chunks:
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                time.sleep(pause)
            conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def only_openai_gained(before: dict, after: dict):
    gained = {c: after[c] - before[c] for c in PROVIDER_CLUSTERS if after[c] != before[c]}
    assert gained == {"provider_openai": 1}, gained


@pytest.mark.parametrize("pause", [0.0, 0.2], ids=["one-piece", "chunked"])
def test_request_reaches_the_cluster_and_path_the_module_sets(stack, floor, pause):
    body = json.dumps(CHAT).encode()
    chunks = [body[:10], body[10:30], body[30:]] if pause else [body]
    before = upstream_requests(floor)
    status, answer = post(floor, "/not/a/provider/path", chunks, pause)
    assert status == 200, answer[:300]
    assert json.loads(answer)["object"] == "chat.completion"
    only_openai_gained(before, upstream_requests(floor))
    [seen] = stack.mock("GET", "/__mock/requests")
    assert seen["path"] == "/v1/chat/completions"
    assert seen["body"] == CHAT and seen["raw_body_len"] == len(body)
    # provider_openai's credential_injector; the route strips the cluster header.
    assert seen["headers"]["authorization"] == "Bearer mock-openai-key"
    assert "x-tollgate-cluster" not in seen["headers"]


def test_no_body_routes_nowhere(stack, floor):
    """With no body the floor decides "none" (as the wasm floor does): the
    cluster comes from the module's header, not from a default."""
    before = upstream_requests(floor)
    status, answer = post(floor, "/v1/chat/completions", None)
    assert status == 503, answer[:300]
    assert b"cluster_not_found" in answer
    assert upstream_requests(floor) == before
    assert stack.mock("GET", "/__mock/requests") == []


def test_the_floor_module_replaces_the_filter_chain():
    from pathlib import Path

    import yaml

    import stack as stack_module
    text = stack_module.render(wasm=Path("/tollgate.wasm"), listen_port=1, admin_port=2, sidecar_port=3, mock_port=4,
                               otlp_port=5, real=set(), floor_module=Path("/floor.so"))
    hcm = yaml.safe_load(text)["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    floor, router = hcm["http_filters"]
    assert floor["typed_config"]["dynamic_module_config"] == {"module": {"local": {"filename": "/floor.so"}}}
    assert router["name"] == "envoy.filters.http.router"
    assert "filters.http.wasm" not in text, "no wasm filter anywhere, upstream ones included"
    with pytest.raises(ValueError):
        stack_module.render(wasm=Path("/tollgate.wasm"), listen_port=1, admin_port=2, sidecar_port=3, mock_port=4,
                            otlp_port=5, real=set(), floor_module=Path("/floor.so"), chain="two_stage")
