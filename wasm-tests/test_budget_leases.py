"""Budgets enforced from leases (the filter debits budget leases in shared
data and asks the sidecar only to refill them): exact request budgets and a
bounded spend overshoot with two Envoy workers, and with two gateway
replicas (Envoy + sidecar each) on one PostgreSQL; no sidecar call per
request once a lease is held."""

import os
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from conftest import openai_client
from pg import Postgres
from stack import Stack
from test_budgets import MESSAGES, key_id, settled

WORKERS = 2


@pytest.fixture(scope="module")
def pg():
    server = Postgres.start()
    if server is None:
        if os.environ.get("TOLLGATE_REQUIRE_POSTGRES"):
            pytest.fail("TOLLGATE_REQUIRE_POSTGRES is set but PostgreSQL is not installed")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, pg):
    """Two gateway replicas, each an Envoy with two workers and its own
    sidecar, sharing one PostgreSQL database."""
    s = Stack(tmp_path_factory.mktemp("replicas"), db=pg.url(), envoy_workers=WORKERS)
    s.start()
    s.envoy_b = s.add_envoy("envoy-b", sidecar_port=s.add_sidecar("sidecar-b"))
    yield s
    s.stop()


def new_key(stack, budget: dict) -> tuple[str, str]:
    key = stack.admin("POST", "/admin/keys", {"team": "leases"})["key"]
    kid = key_id(stack, key)
    stack.admin("POST", "/admin/budgets", {"scope": "key", "scope_id": kid, "period": "daily", "mode": "hard",
                                           **budget})
    return key, kid


def call(client, max_tokens: int | None = None):
    extra = {"max_tokens": max_tokens} if max_tokens else {}
    try:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **extra)
    except openai.RateLimitError as e:
        return e


def until_refused(clients: list, max_tokens: int | None = None, limit: int = 200) -> int:
    """Calls each client in turn until every one is refused; the successes."""
    ok, refused = 0, set()
    for i in range(limit):
        c = i % len(clients)
        if c in refused:
            if len(refused) == len(clients):
                return ok
            continue
        if isinstance(call(clients[c], max_tokens), openai.RateLimitError):
            refused.add(c)
        else:
            ok += 1
    raise AssertionError(f"still admitting after {limit} calls")


def all_settled(stack, kid: str, count: int) -> list[dict]:
    """The ledger rows once `count` have settled; exactly `count` of them."""
    rows = settled(stack, kid, count, timeout=15)
    assert len(rows) == count, f"{len(rows)} ledger rows for {count} answers"
    return rows


def test_a_request_budget_admits_exactly_its_limit_across_replicas_and_workers(replicas):
    stack = replicas
    key, kid = new_key(stack, {"kind": "requests", "limit": 20})
    clients = [openai_client(e.base_url, key) for e in (stack.envoy, stack.envoy_b)]
    # One call each first: the SDK builds its models lazily, and not safely
    # from many threads at once.
    admitted = sum(not isinstance(call(c), Exception) for c in clients)
    with ThreadPoolExecutor(max_workers=32) as pool:
        burst = list(pool.map(lambda i: call(clients[i % 2]), range(60)))
    admitted += sum(not isinstance(r, Exception) for r in burst)
    assert admitted <= 20, f"{admitted} requests passed a budget of 20"
    # Whatever a replica still holds in its lease is used up, and no more.
    admitted += until_refused(clients)
    assert admitted == 20
    assert len(all_settled(stack, kid, 20)) == 20


def test_a_spend_budget_overshoots_by_at_most_one_request(replicas):
    stack = replicas
    price = next(p for p in stack.admin("GET", "/admin/prices")["prices"] if p["model"] == "gpt-4o-mini")
    # One request's estimate: its input estimate plus max_tokens of output.
    max_tokens = 200
    one_request = (50 * price["input"] + max_tokens * price["output"]) / 1e6
    limit = 12 * one_request
    key, kid = new_key(stack, {"kind": "spend", "limit": limit})
    clients = [openai_client(e.base_url, key) for e in (stack.envoy, stack.envoy_b)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        burst = list(pool.map(lambda i: call(clients[i % 2], max_tokens), range(40)))
    admitted = sum(not isinstance(r, Exception) for r in burst) + until_refused(clients, max_tokens)
    rows = all_settled(stack, kid, admitted)
    spent = sum(r["cost_usd"] for r in rows)
    assert spent <= limit + one_request, (spent, limit)
    assert admitted >= 12, f"only {admitted} requests within a budget of 12 requests' estimates"


def test_requests_within_a_lease_make_no_sidecar_call(replicas):
    stack = replicas
    key, _ = new_key(stack, {"kind": "requests", "limit": 10_000})
    client = openai_client(stack.envoy.base_url, key)
    call(client)  # the key check and the first lease
    before = stack.envoy.stats("cluster.tollgate_sidecar.upstream_rq_total")["cluster.tollgate_sidecar.upstream_rq_total"]
    for _ in range(60):
        assert not isinstance(call(client), Exception)
    after = stack.envoy.stats("cluster.tollgate_sidecar.upstream_rq_total")["cluster.tollgate_sidecar.upstream_rq_total"]
    # What remains: usage report batches, key re-checks, lease refills.
    assert after - before < 20, f"{after - before} sidecar calls for 60 requests"
