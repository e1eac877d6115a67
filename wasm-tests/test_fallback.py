"""Fallback chains and key pools end to end. Model gpt-4o-ha (envoy/gateway.yaml)
falls back from OpenAI to Azure to Anthropic: Envoy retries each failed attempt on
the next target of an aggregate cluster, the attempt stage (an upstream filter)
translates the checked request for that target's API and sets its key, and the
client gets an answer in its own API, told which target served it. A request the
filter prepared for OpenAI takes the model's direct cluster: its first attempt runs
no upstream filter, and a failed one is retried into the relay listener, which
tries Azure, then Anthropic (the native module takes the attempt-stage cluster)."""

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import anthropic
import openai
import pytest

from conftest import anthropic_client, openai_client, rejected_config, wait_for
from stack import plugin_value, upstream_filters, wasm_plugins
from test_budgets import key_id, settled

CHAIN = "gpt-4o-ha"
MESSAGES = [{"role": "user", "content": "hi"}]
OPENAI, AZURE, CLAUDE = "openai-ha/gpt-4o", "azure/azure-gpt-4o", "anthropic-ha/claude-sonnet-4-6"
PATHS = {"openai": "/v1/chat/completions", "azure": "/openai/deployments/gpt-4o/chat/completions",
         "anthropic": "/v1/messages"}
TRACE = "5a1b2c3d4e5f60718293a4b5c6d7e8f9"


def without_ejection(config: dict) -> None:
    """The shipped config, but no target is ejected: each test's attempts then
    go where its faults say, whatever the tests before it failed (one test
    checks ejection on an Envoy of its own)."""
    for cluster in config["static_resources"]["clusters"]:
        cluster.pop("outlier_detection", None)


@pytest.fixture(scope="module")
def gateway(stack):
    envoy = stack.add_envoy("envoy-fallback", customize=without_ejection)
    yield envoy
    envoy.stop()


@pytest.fixture(autouse=True)
def clear_faults(stack):
    stack.mock("DELETE", "/__mock/faults")
    yield
    stack.mock("DELETE", "/__mock/faults")


def entry_cluster(stack) -> str:
    """The cluster a prepared gpt-4o-ha request goes to, whose stats count
    its first attempt and retries: the direct cluster, but on the native
    module (which does not relay) the attempt-stage cluster."""
    return "fallback_gpt_4o" if stack.chain == "native" else "direct_gpt_4o"


def first_attempt_status(stack, status: str) -> str:
    """The status class a failed first attempt on a prepared target counts
    under: on the direct cluster no Tollgate filter sees it ("failed";
    Envoy's retry.upstream_rq_<code> of the direct cluster has it), on the
    native module's attempt-stage cluster the attempt stage does."""
    return status if stack.chain == "native" else "failed"


def closed_port() -> int:
    """A port nothing listens on: connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fail(stack, flavor: str, fault: str, count: int = 1, **only):
    stack.mock("POST", "/__mock/faults", {"fault": fault, "count": count, "flavor": flavor, **only})


def upstream_calls(stack) -> list[dict]:
    return [r for r in stack.mock("GET", "/__mock/requests") if r["path"] != "/__mock/requests"]


def paths(stack) -> list[str]:
    return [r["path"] for r in upstream_calls(stack)]


def test_a_healthy_first_target_answers_alone(stack, key, gateway):
    raw = openai_client(gateway.base_url, key).chat.completions.with_raw_response.create(
        model=CHAIN, messages=MESSAGES)
    assert raw.headers["x-tollgate-target"] == OPENAI
    assert raw.parse().choices[0].message.content == "Hello! This is the mock gpt-4o reply."
    (call,) = upstream_calls(stack)
    assert call["path"] == PATHS["openai"] and call["body"]["model"] == "gpt-4o"
    # Nothing of the gateway's own reaches the provider.
    assert not [h for h in call["headers"] if h.startswith(("x-tollgate", "x-envoy-max", "x-envoy-upstream"))]


def test_429_and_500_fall_back_across_apis_each_with_its_own_key(stack, key, gateway):
    fail(stack, "openai", "429")
    fail(stack, "azure", "500")
    start = time.monotonic()
    raw = openai_client(gateway.base_url, key).chat.completions.with_raw_response.create(
        model=CHAIN, messages=MESSAGES, max_tokens=50)
    elapsed = time.monotonic() - start
    completion = raw.parse()
    # An OpenAI answer, written by Claude.
    assert raw.headers["x-tollgate-target"] == CLAUDE
    assert completion.choices[0].message.content == "Hello! This is the mock claude-sonnet-4-6 reply."
    assert completion.object == "chat.completion"
    calls = upstream_calls(stack)
    assert [c["path"] for c in calls] == [PATHS["openai"], PATHS["azure"], PATHS["anthropic"]]
    # Each attempt in its provider's API with its provider's key (the mock
    # refuses any other key, and a 401 is not retried).
    assert calls[2]["body"]["max_tokens"] == 50
    assert calls[2]["body"]["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert calls[2]["headers"]["x-api-key"] == "mock-anthropic-key"
    assert "authorization" not in calls[2]["headers"] and "api-key" not in calls[2]["headers"]
    assert calls[1]["headers"]["api-key"] == "mock-azure-key" and "authorization" not in calls[1]["headers"]
    # The provider's retry-after: 1 was waited out before the second attempt.
    assert elapsed >= 0.9


def test_anthropic_client_gets_messages_from_an_openai_target(stack, key, gateway):
    client = anthropic_client(gateway.base_url, key)
    # The first target speaks another API: every attempt is translated by the attempt stage.
    raw = client.messages.with_raw_response.create(model=CHAIN, max_tokens=20, messages=MESSAGES)
    assert raw.headers["x-tollgate-target"] == OPENAI
    message = raw.parse()
    assert message.type == "message" and message.content[0].text == "Hello! This is the mock gpt-4o reply."
    assert upstream_calls(stack)[0]["body"]["model"] == "gpt-4o"
    stack.mock("DELETE", "/__mock/requests")
    fail(stack, "openai", "503")
    raw = client.messages.with_raw_response.create(model=CHAIN, max_tokens=20, messages=MESSAGES)
    assert raw.headers["x-tollgate-target"] == AZURE
    assert raw.parse().content[0].text.startswith("Hello! This is the mock")
    assert paths(stack) == [PATHS["openai"], PATHS["azure"]]


def test_streams_fall_back_across_apis_for_each_sdk(stack, key, gateway):
    fail(stack, "openai", "503")
    fail(stack, "azure", "reset")
    with openai_client(gateway.base_url, key).chat.completions.stream(
            model=CHAIN, messages=MESSAGES, stream_options={"include_usage": True}) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.content == "Hello! This is the mock claude-sonnet-4-6 reply."
    assert final.usage.completion_tokens > 0
    assert paths(stack) == [PATHS["openai"], PATHS["azure"], PATHS["anthropic"]]

    stack.mock("DELETE", "/__mock/requests")
    fail(stack, "openai", "429")
    with anthropic_client(gateway.base_url, key).messages.stream(
            model=CHAIN, max_tokens=20, messages=MESSAGES) as s:
        message = s.get_final_message()
    assert message.content[0].text == "Hello! This is the mock gpt-4o reply."  # the Azure deployment's
    assert message.usage.output_tokens > 0

    fail(stack, "openai", "500")
    with openai_client(gateway.base_url, key).responses.stream(model=CHAIN, input="hi") as s:
        response = s.get_final_response()
    assert response.output_text.startswith("Hello! This is the mock")


def test_a_two_megabyte_request_falls_back_whole(stack, key, gateway):
    """Envoy keeps the body for retries and the attempt stage holds it to
    translate: neither may cut a large one."""
    fail(stack, "openai", "500")
    raw = anthropic_client(gateway.base_url, key).messages.with_raw_response.create(
        model=CHAIN, max_tokens=20, messages=[{"role": "user", "content": "word " * 400_000}])
    assert raw.headers["x-tollgate-target"] == AZURE
    calls = upstream_calls(stack)
    assert [c["path"] for c in calls] == [PATHS["openai"], PATHS["azure"]]
    assert all(c["raw_body_len"] > 2_000_000 for c in calls)


def test_when_every_target_fails_the_client_gets_the_last_error_in_its_format(stack, key, gateway):
    for flavor in ("openai", "azure", "anthropic"):
        fail(stack, flavor, "429")
    with pytest.raises(openai.RateLimitError) as err:
        openai_client(gateway.base_url, key).chat.completions.create(model=CHAIN, messages=MESSAGES)
    # The last target's 429 as it came, in OpenAI's format.
    assert err.value.status_code == 429
    assert err.value.response.headers.get("retry-after") == "1"
    assert err.value.response.headers["x-tollgate-target"] == CLAUDE
    assert err.value.body["type"] == "rate_limit_error" and err.value.body["code"] == "rate_limit_exceeded"
    # One attempt per target, no more (x-envoy-max-retries: 2).
    assert paths(stack) == [PATHS["openai"], PATHS["azure"], PATHS["anthropic"]]


def test_errors_that_another_target_would_repeat_are_not_retried(stack, key, gateway):
    """A 400 is the request's fault: trying it elsewhere would only spend more."""
    with pytest.raises(openai.BadRequestError):
        openai_client(gateway.base_url, key).chat.completions.create(
            model=CHAIN, messages=MESSAGES, extra_headers={"x-mock-fault": "nope"})
    assert len(upstream_calls(stack)) == 1


def test_a_hanging_target_times_out_to_the_next(stack, key):
    """attempt_timeout_ms bounds the wait for a target's response headers."""
    def customize(config):
        without_ejection(config)
        set_model_field(config, CHAIN, "attempt_timeout_ms", 1000)

    def served_within_the_bound() -> str:
        start = time.monotonic()
        raw = openai_client(envoy.base_url, key).chat.completions.with_raw_response.create(
            model=CHAIN, messages=MESSAGES)
        assert 0.9 <= time.monotonic() - start < 4
        return raw.headers["x-tollgate-target"]

    envoy = stack.add_envoy("envoy-attempt-timeout", customize=customize)
    try:
        fail(stack, "openai", "slow:5000")
        assert served_within_the_bound() == AZURE
        # The attempt that timed out counts, with no status. (On the direct
        # cluster Envoy races it with the relay rather than cutting it:
        # its stats count a retry, not a per-try timeout.)
        counted, _ = wait_for(lambda: envoy.stats("tollgate").get(
            "wasmcustom.tollgate.attempts.provider.openai-ha.status.failed") == 1, timeout=3)
        assert counted, envoy.stats("tollgate")
        retried = f"cluster.{entry_cluster(stack)}.upstream_rq_retry"
        assert envoy.stats(retried).get(retried) == 1

        # A later target that hangs is passed over too: the bound is per
        # attempt, not on the fallback attempts together.
        stack.mock("DELETE", "/__mock/requests")
        fail(stack, "openai", "500")
        fail(stack, "azure", "slow:5000")
        assert served_within_the_bound() == CLAUDE
        assert paths(stack) == [PATHS["openai"], PATHS["azure"], PATHS["anthropic"]]
    finally:
        envoy.stop()


def test_a_target_that_refuses_connections_is_passed_over(stack, key):
    def customize(config):
        without_ejection(config)
        ha_openai = next(c for c in config["static_resources"]["clusters"] if c["name"] == "ha_openai")
        for lb in ha_openai["load_assignment"]["endpoints"][0]["lb_endpoints"]:
            lb["endpoint"]["address"]["socket_address"]["port_value"] = closed_port()

    envoy = stack.add_envoy("envoy-connect-failure", customize=customize)
    try:
        raw = openai_client(envoy.base_url, key).chat.completions.with_raw_response.create(
            model=CHAIN, messages=MESSAGES)
        assert raw.headers["x-tollgate-target"] == AZURE
        assert paths(stack) == [PATHS["azure"]]
        # The attempt that got no answer counts too.
        counted, _ = wait_for(lambda: envoy.stats("tollgate").get(
            "wasmcustom.tollgate.attempts.provider.openai-ha.status.failed") == 1, timeout=3)
        assert counted
    finally:
        envoy.stop()


ATTEMPT_LOG = "attempts=%FILTER_STATE(wasm.tollgate.attempts:PLAIN)% upstream=%UPSTREAM_HOST%"


def with_attempt_logs(paths_by_listener: dict):
    """without_ejection, and an access log per listener (by name) of what
    the attempt stage left in filter state and where the request went."""
    def customize(config):
        without_ejection(config)
        for listener in config["static_resources"]["listeners"]:
            if listener["name"] in paths_by_listener:
                hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
                hcm["access_log"] = [{"name": "attempts", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": str(paths_by_listener[listener["name"]]),
                    "log_format": {"text_format_source": {"inline_string": ATTEMPT_LOG + "\n"}}}}]
    return customize


def log_lines(path, n: int) -> list[str]:
    lines, _ = wait_for(lambda: (t := path.read_text().splitlines() if path.exists() else []) and len(t) >= n and t,
                        timeout=5)
    assert lines, f"fewer than {n} lines in {path}"
    return lines


def test_a_first_attempt_runs_no_attempt_stage_and_the_relay_runs_it_on_the_rest(stack, key, tmp_path):
    """The request stage prepared the request for OpenAI (body, path, key):
    its first attempt goes through plain Envoy; a failed one is retried into
    the relay listener, where each attempt runs the attempt stage."""
    if stack.chain == "native":
        pytest.skip("the native module takes the attempt-stage cluster (it does not relay)")
    outer, relay = tmp_path / "gateway.log", tmp_path / "relay.log"
    envoy = stack.add_envoy("envoy-attempt-log", customize=with_attempt_logs({"tollgate": outer,
                                                                             "tollgate_relay": relay}))
    try:
        client = openai_client(envoy.base_url, key)
        raw = client.chat.completions.with_raw_response.create(model=CHAIN, messages=MESSAGES)
        assert raw.headers["x-tollgate-target"] == OPENAI
        (call,) = upstream_calls(stack)
        assert call["headers"]["authorization"] == "Bearer mock-openai-key"
        fail(stack, "openai", "500")
        raw = client.chat.completions.with_raw_response.create(model=CHAIN, messages=MESSAGES)
        assert raw.headers["x-tollgate-target"] == AZURE
        assert "x-tollgate-attempts" not in raw.headers
        first, second = log_lines(outer, 2)
        # No attempt stage ran in the gateway listener: the first request
        # went to the mock, the second ended at the relay ...
        assert first.startswith("attempts=- upstream=127.0.0.1:"), first
        assert second.startswith("attempts=- upstream=envoy://"), second
        # ... whose attempt stage sent it to Azure.
        (relayed,) = log_lines(relay, 1)
        assert relayed.startswith("attempts=1@") and "=200 upstream=127.0.0.1:" in relayed, relayed
        # The direct attempt is counted, with no status seen (Envoy's stats
        # have its 500), and the relay's answer.
        attempts = "wasmcustom.tollgate.attempts.provider.{}.status.{}"
        counted, _ = wait_for(lambda: (s := envoy.stats("tollgate")).get(attempts.format("openai-ha", "failed")) == 1
                              and s.get(attempts.format("azure", "2xx")) == 1, timeout=3)
        assert counted, envoy.stats("tollgate")
        retried = "cluster.direct_gpt_4o.retry.upstream_rq_500"
        assert envoy.stats(retried).get(retried) == 1
    finally:
        envoy.stop()


def test_a_first_attempt_on_another_target_than_the_prepared_one_runs_the_attempt_stage(stack, key):
    """On a model without a direct cluster every attempt runs the attempt
    stage: an attempt that Envoy sends to another target than the one the
    request was prepared for is translated and gets that target's key, and
    the prepared target's key goes nowhere else."""
    def customize(config):
        without_ejection(config)
        set_model_field(config, CHAIN, "direct_cluster", None)
        set_model_field(config, CHAIN, "relay_cluster", None)
        aggregate = next(c for c in config["static_resources"]["clusters"] if c["name"] == "fallback_gpt_4o")
        aggregate["cluster_type"]["typed_config"]["clusters"] = ["ha_azure", "ha_openai", "ha_anthropic"]

    envoy = stack.add_envoy("envoy-azure-first", customize=customize)
    try:
        raw = openai_client(envoy.base_url, key).chat.completions.with_raw_response.create(
            model=CHAIN, messages=MESSAGES)
        assert raw.headers["x-tollgate-target"] == AZURE
        (call,) = upstream_calls(stack)
        assert call["path"] == PATHS["azure"]
        assert call["headers"]["api-key"] == "mock-azure-key" and "authorization" not in call["headers"]
    finally:
        envoy.stop()


def test_a_rate_limited_first_target_is_ejected_and_requests_go_to_the_next(stack, key):
    """429s from the prepared target (no attempt stage ran) count for
    outlier detection as 5xx do (the chain's error_matcher): three eject
    it, and the next requests go to Azure directly."""
    envoy = stack.add_envoy("envoy-first-ejected")
    try:
        fail(stack, "openai", "429", count=1000)
        client = openai_client(envoy.base_url, key)
        for _ in range(3):
            raw = client.chat.completions.with_raw_response.create(model=CHAIN, messages=MESSAGES)
            assert raw.headers["x-tollgate-target"] == AZURE
        # Envoy saw each 429 as it came (not rewritten into a 503) ...
        stat = f"cluster.{entry_cluster(stack)}.retry.upstream_rq_429"
        retried = envoy.stats(stat)
        assert retried.get(stat) == 3, retried
        # ... and its outlier detection counted them (the chain's error_matcher).
        ejected = envoy.stats("cluster.ha_openai.outlier_detection.ejections_enforced_total")
        assert ejected.get("cluster.ha_openai.outlier_detection.ejections_enforced_total") == 1
        stack.mock("DELETE", "/__mock/requests")
        for _ in range(3):
            raw = client.chat.completions.with_raw_response.create(model=CHAIN, messages=MESSAGES)
            assert raw.headers["x-tollgate-target"] == AZURE
        assert paths(stack) == [PATHS["azure"]] * 3
        counted, _ = wait_for(lambda: envoy.stats("tollgate").get(
            f"wasmcustom.tollgate.attempts.provider.openai-ha.status.{first_attempt_status(stack, '4xx')}") == 3,
            timeout=3)
        assert counted
    finally:
        envoy.stop()


def test_a_client_error_neither_falls_back_nor_ejects(stack, key):
    """A 400 is the request's fault, not the target's: the client gets it,
    no other target is tried, and the error_matcher (429 to 599) does not
    count it, so a run of them ejects nothing."""
    envoy = stack.add_envoy("envoy-client-errors")
    try:
        fail(stack, "openai", "400", count=4)
        client = openai_client(envoy.base_url, key)
        for _ in range(4):
            with pytest.raises(openai.BadRequestError):
                client.chat.completions.create(model=CHAIN, messages=MESSAGES)
        assert paths(stack) == [PATHS["openai"]] * 4
        stat = "cluster.ha_openai.outlier_detection.ejections_enforced_total"
        assert envoy.stats(stat).get(stat, 0) == 0
    finally:
        envoy.stop()


def with_retries_on_one_target(config: dict) -> None:
    """without_ejection, and model gpt-4o-retry: OpenAI alone (ha_openai,
    one endpoint with no key of its own) tried twice, so a retry lands on
    the target the request was prepared for."""
    without_ejection(config)
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    clusters["ha_openai"]["typed_extension_protocol_options"] = clusters["fallback_gpt_4o"][
        "typed_extension_protocol_options"]
    plugin = plugin_value(config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]["http_filters"][0])
    settings = json.loads(plugin["value"])
    settings["models"].append({"name": "gpt-4o-retry", "provider": "openai-ha", "upstream_model": "gpt-4o",
                               "cluster": "ha_openai", "max_attempts": 2})
    plugin["value"] = json.dumps(settings)


def test_a_retry_on_the_prepared_target_is_counted_with_the_attempt_it_follows(stack, key):
    """On a cluster with the attempt stage (a pool of one here), a retry on
    the prepared target runs the stage as the first attempt did: both are
    counted, with their statuses, and both go with the target's key."""
    envoy = stack.add_envoy("envoy-retry-one-target", customize=with_retries_on_one_target)
    try:
        fail(stack, "openai", "500")
        raw = openai_client(envoy.base_url, key).chat.completions.with_raw_response.create(
            model="gpt-4o-retry", messages=MESSAGES)
        assert raw.headers["x-tollgate-target"] == OPENAI
        calls = upstream_calls(stack)
        assert [c["path"] for c in calls] == [PATHS["openai"]] * 2
        assert {c["headers"]["authorization"] for c in calls} == {"Bearer mock-openai-key"}
        attempts = "wasmcustom.tollgate.attempts.provider.openai-ha.status.{}"
        stats, _ = wait_for(lambda: (s := envoy.stats("tollgate")).get(attempts.format("2xx")) == 1 and s,
                            timeout=3)
        assert stats, envoy.stats("tollgate")
        assert stats.get(attempts.format("5xx")) == 1
    finally:
        envoy.stop()


def test_a_bad_chain_stops_envoy_at_start_up(tmp_path):
    """Cycles and unknown names are configuration errors, reported with the rest."""
    def broken(config):
        set_model_field(config, CHAIN, "fallbacks", ["nope", CHAIN])

    log = rejected_config(tmp_path, broken)
    assert "fallback `nope` is not the exact name of another entry in models" in log
    assert "fallbacks form a cycle: gpt-4o-ha -> gpt-4o-ha" in log


def test_the_retry_budget_keeps_an_outage_from_multiplying_the_load(stack, key, gateway):
    """Twelve requests fail together on a slow first target; the retries that
    follow may add only max(3, 20% of the requests in flight) at a time
    (the aggregate cluster's retry_budget): the rest get the failure."""
    n = 12
    fail(stack, "openai", "slow:400:500", count=n)
    fail(stack, "azure", "slow:400", count=n)
    stat = f"cluster.{entry_cluster(stack)}.upstream_rq_retry_overflow"
    before = gateway.stats(stat).get(stat, 0)
    client = openai_client(gateway.base_url, key)

    def call(_):
        try:
            return client.chat.completions.with_raw_response.create(model=CHAIN, messages=MESSAGES).headers[
                "x-tollgate-target"]
        except openai.InternalServerError:
            return "failed"

    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(call, range(n)))
    retried = paths(stack).count(PATHS["azure"])
    overflow = gateway.stats(stat).get(stat, 0) - before
    assert results.count(AZURE) == retried and results.count("failed") == overflow
    assert retried + overflow == n, (retried, overflow)
    assert 3 <= retried < n


def test_no_retry_once_a_stream_has_begun_and_the_part_produced_is_billed(stack, key, gateway):
    kid = key_id(stack, key)
    # The first target's stream breaks after a few events: an error event
    # in the client's format, no other target tried.
    fail(stack, "openai", "error-mid-stream")
    events = []
    with pytest.raises(openai.APIError) as err:
        for chunk in openai_client(gateway.base_url, key).chat.completions.create(
                model=CHAIN, messages=MESSAGES, stream=True):
            events.append(chunk)
    assert "Overloaded" in str(err.value)
    assert events and events[0].choices[0].delta.content is not None
    assert paths(stack) == [PATHS["openai"]]
    # Cross-API: Claude's error event reaches an OpenAI client as OpenAI's.
    stack.mock("DELETE", "/__mock/requests")
    fail(stack, "openai", "503")
    fail(stack, "azure", "503")
    fail(stack, "anthropic", "error-mid-stream")
    with pytest.raises(openai.APIError) as err:
        list(openai_client(gateway.base_url, key).chat.completions.create(
            model=CHAIN, messages=MESSAGES, stream=True))
    assert "Overloaded" in str(err.value)
    assert paths(stack) == [PATHS["openai"], PATHS["azure"], PATHS["anthropic"]]
    # Both are billed for what was produced, at the model that produced it.
    rows = settled(stack, kid, 2)
    assert sorted(r["upstream_model"] for r in rows) == ["claude-sonnet-4-6", "gpt-4o"]
    assert all(r["output_tokens"] > 0 for r in rows)


def test_a_stream_cut_mid_way_is_not_retried_and_its_part_is_billed(stack, key, gateway):
    """The provider drops the connection after a few events: Envoy resets the
    client's stream (no filter can add an event there), tries no other
    target, and the ledger bills the text that went out, estimated."""
    kid = key_id(stack, key)
    fail(stack, "openai", "reset-mid-stream")
    received = []
    with pytest.raises(openai.APIError):
        for chunk in openai_client(gateway.base_url, key).chat.completions.create(
                model=CHAIN, messages=MESSAGES, stream=True):
            received.append(chunk)
    assert received, "the first events reached the client"
    assert paths(stack) == [PATHS["openai"]]
    (row,) = settled(stack, kid, 1)
    assert row["estimated"] and row["output_tokens"] > 0 and row["provider"] == "openai-ha"


def test_the_ledger_and_the_trace_show_every_attempt_and_the_served_target(stack, key, gateway):
    kid = key_id(stack, key)
    fail(stack, "openai", "429")
    fail(stack, "azure", "500")
    completion = openai_client(gateway.base_url, key).chat.completions.create(
        model=CHAIN, messages=MESSAGES, extra_headers={"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"})
    (row,) = settled(stack, kid, 1)
    assert (row["provider"], row["model"], row["upstream_model"]) == ("anthropic-ha", CHAIN, "claude-sonnet-4-6")
    # Failed attempts produced nothing; the answer is priced at Claude's rates ($3 / $15 per million).
    usage = completion.usage
    assert row["cost_usd"] == pytest.approx((usage.prompt_tokens * 3 + usage.completion_tokens * 15) / 1e6)

    def upstream_spans():
        spans = [s for s in stack.otlp("GET", "/__otlp/spans") if s["trace_id"] == TRACE]
        ups = [s for s in spans if s["name"].endswith(" upstream")]
        return ups if len(ups) >= 3 else None

    spans, _ = wait_for(upstream_spans, timeout=5)
    assert spans, "no upstream spans"
    spans.sort(key=lambda s: s["start"])
    # The first attempt's status is seen where the attempt stage ran on it
    # (the native module); on the direct cluster its span has none.
    first = 429 if stack.chain == "native" else None
    assert [(s["attributes"]["tollgate.provider"], s["attributes"].get("http.response.status_code")) for s in spans] == [
        ("openai-ha", first), ("azure", 500), ("anthropic-ha", 200)]
    assert len({s["span_id"] for s in spans}) == 3 and len({s["parent_span_id"] for s in spans}) == 1
    assert [s["status_code"] == 2 for s in spans] == [True, True, False]  # 2: error
    # Each attempt ends where the next begins.
    assert spans[0]["end"] <= spans[1]["start"] and spans[1]["end"] <= spans[2]["start"]


def test_stats_count_attempts_and_fallbacks_by_target(stack, key, gateway):
    before = gateway.stats("tollgate")
    fail(stack, "openai", "500")
    openai_client(gateway.base_url, key).chat.completions.create(model=CHAIN, messages=MESSAGES)

    def delta(name):
        return gateway.stats("tollgate").get(name, 0) - before.get(name, 0)

    attempts = "wasmcustom.tollgate.attempts.provider.{}.status.{}"
    counted, _ = wait_for(lambda: delta("wasmcustom.tollgate.fallbacks.provider.azure") == 1, timeout=3)
    assert counted
    assert delta(attempts.format("openai-ha", first_attempt_status(stack, "5xx"))) == 1
    assert delta(attempts.format("azure", "2xx")) == 1


def set_model_field(config: dict, model: str, field: str, value) -> None:
    """Sets `field` of `model`'s entry in the rendered gateway's filter configuration."""
    plugin = plugin_value(config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]["http_filters"][0])
    settings = json.loads(plugin["value"])
    next(m for m in settings["models"] if m["name"] == model)[field] = value
    plugin["value"] = json.dumps(settings)


def with_key_pool(config: dict) -> None:
    """ha_openai as a pool of two keys (OPENAI_API_KEY, OPENAI_API_KEY_2) for
    model gpt-4o-pool, with the attempt stage on it."""
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    pool = clusters["ha_openai"]
    (endpoints,) = pool["load_assignment"]["endpoints"]
    second = json.loads(json.dumps(endpoints["lb_endpoints"][0]))
    second["metadata"]["filter_metadata"]["tollgate"]["credential"] = "OPENAI_API_KEY_2"
    endpoints["lb_endpoints"].append(second)
    pool["typed_extension_protocol_options"] = clusters["fallback_gpt_4o"]["typed_extension_protocol_options"]
    # Every stage's VM sees the second key (they must stay one VM).
    listener_filters = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]["http_filters"]
    for plugin in wasm_plugins(listener_filters + [f for c in clusters.values() for f in upstream_filters(c)]):
        keys = plugin.get("vm_config", {}).get("environment_variables", {}).get("host_env_keys")
        if keys is not None and "OPENAI_API_KEY_2" not in keys:
            keys.append("OPENAI_API_KEY_2")
    plugin = plugin_value(listener_filters[0])
    settings = json.loads(plugin["value"])
    settings["models"].append({"name": "gpt-4o-pool", "provider": "openai-ha", "upstream_model": "gpt-4o",
                               "cluster": "ha_openai", "max_attempts": 3})
    plugin["value"] = json.dumps(settings)


def test_a_pool_retries_on_its_other_key_until_one_answers(stack, key):
    envoy = stack.add_envoy("envoy-key-pool-retries", customize=lambda c: (without_ejection(c), with_key_pool(c)))
    try:
        fail(stack, "openai", "500", count=2)
        raw = openai_client(envoy.base_url, key).chat.completions.with_raw_response.create(
            model="gpt-4o-pool", messages=MESSAGES)
        assert raw.headers["x-tollgate-target"] == OPENAI
        keys = [r["headers"]["authorization"] for r in upstream_calls(stack)]
        # Two failures, then the third attempt (max_attempts) answers. The
        # first retry goes to the other key (previous_hosts); with both tried,
        # the third may go to either.
        assert len(keys) == 3 and keys[0] != keys[1]
    finally:
        envoy.stop()


def test_a_pool_spreads_requests_by_weight(stack, key):
    def weighted(config):
        without_ejection(config)
        with_key_pool(config)
        pool = next(c for c in config["static_resources"]["clusters"] if c["name"] == "ha_openai")
        first, second = pool["load_assignment"]["endpoints"][0]["lb_endpoints"]
        first["load_balancing_weight"], second["load_balancing_weight"] = 3, 1

    envoy = stack.add_envoy("envoy-key-pool-weights", customize=weighted)
    try:
        client = openai_client(envoy.base_url, key)
        for _ in range(40):
            client.chat.completions.create(model="gpt-4o-pool", messages=MESSAGES)
        keys = [r["headers"]["authorization"] for r in upstream_calls(stack)]
        assert len(keys) == 40
        assert 25 <= keys.count("Bearer mock-openai-key") <= 35
    finally:
        envoy.stop()


def test_a_rate_limited_key_of_a_pool_is_ejected_and_its_traffic_moves(stack, key):
    envoy = stack.add_envoy("envoy-key-pool", customize=with_key_pool)
    try:
        second = "mock-openai-key-2"
        fail(stack, "openai", "429", count=1000, credential=second)
        client = openai_client(envoy.base_url, key)
        for _ in range(8):
            assert client.chat.completions.create(model="gpt-4o-pool", messages=MESSAGES).choices
        keys = [r["headers"]["authorization"].removeprefix("Bearer ") for r in upstream_calls(stack)]
        assert set(keys) == {"mock-openai-key", second}
        # Three 429s in a row eject the key.
        assert keys.count(second) == 3
        # Envoy saw each 429 as it came (not rewritten into a 503) ...
        retried = envoy.stats("cluster.ha_openai.retry.upstream_rq_429")
        assert retried.get("cluster.ha_openai.retry.upstream_rq_429") == 3, retried
        # ... and its outlier detection counted them (the chain's error_matcher).
        ejected = envoy.stats("cluster.ha_openai.outlier_detection.ejections_enforced_total")
        assert ejected.get("cluster.ha_openai.outlier_detection.ejections_enforced_total") == 1
        stack.mock("DELETE", "/__mock/requests")
        for _ in range(4):
            client.chat.completions.create(model="gpt-4o-pool", messages=MESSAGES)
        assert {r["headers"]["authorization"] for r in upstream_calls(stack)} == {"Bearer mock-openai-key"}
    finally:
        envoy.stop()
