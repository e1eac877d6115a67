"""Budget periods end to end, on a sidecar whose clock the test moves
(`serve --test-clock`): a daily budget and a per-minute rate limit block
through Envoy with the reset time, and let requests through again once the
clock passes it."""

import openai
import pytest

from conftest import openai_client
from stack import Stack
from test_budgets import MESSAGES, key_id, settled

DAY = 86_400


@pytest.fixture(scope="module")
def clock_stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("clock-stack"), sidecar_args=["--test-clock"],
              plugin_overrides={"key_cache_ttl_ms": 1500})
    s.start()
    yield s
    s.stop()


def now(stack) -> int:
    return stack.admin("POST", "/admin/clock", {})["now"]


def key_with_request_limit(stack, limit: int, period: str) -> tuple[str, str]:
    """A new key with a hard request budget; returns the key and its id."""
    key = stack.admin("POST", "/admin/keys", {"team": "periods"})["key"]
    kid = key_id(stack, key)
    stack.admin("POST", "/admin/budgets", {"scope": "key", "scope_id": kid, "kind": "requests", "limit": limit,
                                           "period": period, "mode": "hard"})
    return key, kid


def test_daily_budget_blocks_until_midnight_utc(clock_stack):
    stack = clock_stack
    key, kid = key_with_request_limit(stack, 1, "daily")
    client = openai_client(stack.envoy.base_url, key)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    settled(stack, kid, 1)
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    midnight = (now(stack) // DAY + 1) * DAY
    # The clock keeps flowing (it is shifted, not frozen): allow a second or two.
    assert abs(int(err.value.response.headers["retry-after"]) - (midnight - now(stack))) <= 2
    assert "daily" in err.value.message and "resets" in err.value.message

    stack.admin("POST", "/admin/clock", {"now": midnight})
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices
    assert len(settled(stack, kid, 2)) == 2


def test_rate_limit_per_minute_resets_at_the_next_minute(clock_stack):
    stack = clock_stack
    key, kid = key_with_request_limit(stack, 2, "minute")
    # Start at the top of a minute so the three calls share it.
    stack.admin("POST", "/admin/clock", {"now": (now(stack) // 60 + 1) * 60})
    client = openai_client(stack.envoy.base_url, key)
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    # Settled before the clock moves: the sidecar maps a report's time
    # through the clock's current shift, so a late report would land in the
    # next minute.
    settled(stack, kid, 2)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    stack.admin("POST", "/admin/clock", {"advance_s": 60})
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices
    assert len(settled(stack, kid, 3)) == 3
