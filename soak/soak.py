#!/usr/bin/env python3
"""Soak test (bounded; not part of `make test`): N mixed requests through
Envoy + Tollgate + sidecar + the scripted mock provider, from several
threads over keep-alive connections.

The mix: all three client APIs, streaming and not, translated and not,
guardrail hits, a fallback chain (healthy, and every target failing),
provider faults (429, 500, reset, reset mid-stream, broken
SSE), unknown keys, malformed bodies. At the end it checks:
  - zero wasm VM failures (Envoy's vm_reload counters),
  - every answer is one the client can understand: a 2xx with a valid body
    or stream, or an error JSON in the client's API format,
  - zero lost usage: as many ledger rows of forwarded requests in the
    sidecar as requests the provider saw, at least (by count: the ledger's
    ids are the gateway's own, which the provider never sees),
  - the filter's VM memory before, during (sampled every 10 s, against the
    requests done so far) and after: wasm memory only grows, so a plateau
    is the high-water mark and a steady climb would be a leak.

Usage: python3 soak/soak.py [--requests 100000] [--threads 8]   (after make build)
"""

import argparse
import http.client
import json
import random
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from stack import Stack  # noqa: E402

MESSAGES = [{"role": "user", "content": "Say hello"}]


def scenarios(key: str, bad_key: str):
    """(weight, name, path, headers, body, expected client format)."""
    openai_h = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    anthropic_h = {"x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    chat = {"model": "gpt-4o-mini", "messages": MESSAGES}
    msg = {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": MESSAGES}
    return [
        (20, "chat", "/v1/chat/completions", openai_h, chat, "openai"),
        (15, "chat-stream", "/v1/chat/completions", openai_h, {**chat, "stream": True}, "openai"),
        (15, "messages", "/v1/messages", anthropic_h, msg, "anthropic"),
        (10, "messages-stream", "/v1/messages", anthropic_h, {**msg, "stream": True}, "anthropic"),
        (8, "responses", "/v1/responses", openai_h, {"model": "gpt-4o", "input": "Say hello"}, "openai"),
        (6, "chat-to-claude", "/v1/chat/completions", openai_h, {**chat, "model": "claude-haiku-4-5"}, "openai"),
        (5, "messages-to-gpt", "/v1/messages", anthropic_h, {**msg, "model": "gpt-4o-mini"}, "anthropic"),
        (4, "guardrail-hit", "/v1/chat/completions", openai_h,
         {**chat, "messages": [{"role": "user", "content": "my card is 4111 1111 1111 1111"}]}, "openai"),
        (3, "fault-429", "/v1/chat/completions", {**openai_h, "x-mock-fault": "429"}, chat, "openai"),
        (3, "fault-500", "/v1/messages", {**anthropic_h, "x-mock-fault": "500"}, msg, "anthropic"),
        (2, "fault-reset", "/v1/chat/completions", {**openai_h, "x-mock-fault": "reset"}, chat, "openai"),
        (2, "fault-reset-mid-stream", "/v1/chat/completions", {**openai_h, "x-mock-fault": "reset-mid-stream"},
         {**chat, "stream": True}, "openai"),
        (2, "fault-bad-sse", "/v1/messages", {**anthropic_h, "x-mock-fault": "bad-sse"}, {**msg, "stream": True},
         "anthropic"),
        # The gpt-4o-ha fallback chain: healthy, translated by the attempt
        # stage, and every target failing (a fault header reaches them all),
        # which also ejects targets, so some requests find none healthy.
        (4, "chain", "/v1/chat/completions", openai_h, {**chat, "model": "gpt-4o-ha"}, "openai"),
        (3, "chain-messages-stream", "/v1/messages", anthropic_h, {**msg, "model": "gpt-4o-ha", "stream": True},
         "anthropic"),
        (2, "chain-fault-500", "/v1/chat/completions", {**openai_h, "x-mock-fault": "500"},
         {**chat, "model": "gpt-4o-ha"}, "openai"),
        (1, "chain-fault-reset", "/v1/messages", {**anthropic_h, "x-mock-fault": "reset"},
         {**msg, "model": "gpt-4o-ha", "stream": True}, "anthropic"),
        (3, "bad-key", "/v1/chat/completions", {**openai_h, "authorization": f"Bearer {bad_key}"}, chat, "openai"),
        (2, "malformed", "/v1/messages", anthropic_h, "{not json", "anthropic"),
    ]


def understandable(status: int, ctype: str, body: bytes, fmt: str, name: str) -> str | None:
    """None if a client of that API can make sense of the answer, else why not."""
    if status == 0:
        return None if "reset" in name else "connection dropped"
    if 200 <= status < 300:
        if "text/event-stream" in ctype:
            return None if body.startswith((b"data:", b"event:")) or "reset" in name else "bad stream start"
        try:
            json.loads(body)
            return None
        except ValueError:
            return "2xx body is not JSON"
    try:
        err = json.loads(body)
    except ValueError:
        return f"{status} error body is not JSON: {body[:80]!r}"
    ok = (isinstance(err.get("error"), dict) and "message" in err["error"]) if fmt == "openai" else \
        (err.get("type") == "error" and "message" in err.get("error", {}))
    return None if ok else f"{status} error not in {fmt} format: {body[:120]!r}"


def worker(port: int, plan: list, results: list, lock: threading.Lock, done: list, slot: int):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    local = []
    for name, path, headers, body, fmt in plan:
        done[slot] += 1
        payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        try:
            conn.request("POST", path, body=payload, headers=headers)
            r = conn.getresponse()
            data = r.read()
            status, ctype, rid = r.status, r.getheader("content-type") or "", r.getheader("x-request-id")
        except (http.client.HTTPException, OSError):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            status, ctype, data, rid = 0, "", b"", None
        local.append((name, status, understandable(status, ctype, data, fmt, name), rid))
    with lock:
        results.extend(local)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-budgets", action="store_true", help="skip reservations and usage reports")
    args = parser.parse_args()
    if args.requests > 100_000:
        parser.error("the ledger check reads at most 100000 rows (the sidecar's limit): use --requests <= 100000")
    rng = random.Random(args.seed)
    stack = Stack(Path(tempfile.mkdtemp(prefix="tollgate-soak-")), envoy_log_level="warning",
                  plugin_overrides={"tracing": None,
                                    "budgets": None if args.no_budgets else {"enforce": True}}).start()
    try:
        key = stack.admin("POST", "/admin/keys", {"team": "soak"})["key"]
        mix = scenarios(key, "tg-" + "x" * 43)
        weights = [m[0] for m in mix]
        plan = [rng.choices(mix, weights)[0][1:] for _ in range(args.requests)]
        mem = lambda: next(iter(stack.envoy.stats("tollgate.vm.memory_bytes").values()), 0)  # noqa: E731
        # The worker reports its memory once it has served a request.
        worker(stack.envoy.port, plan[:1], [], threading.Lock(), [0], 0)
        time.sleep(1.2)  # the memory gauge refreshes every second
        mem_before = mem()
        results, lock = [], threading.Lock()
        done = [0] * args.threads
        chunks = [plan[i::args.threads] for i in range(args.threads)]
        threads = [threading.Thread(target=worker, args=(stack.envoy.port, c, results, lock, done, i))
                   for i, c in enumerate(chunks)]
        start = time.time()
        for t in threads:
            t.start()
        timeline = []  # (requests done, VM bytes), every 10 s
        next_sample = time.time() + 10
        while any(t.is_alive() for t in threads):
            time.sleep(0.2)
            if time.time() >= next_sample:
                timeline.append((sum(done), mem()))
                next_sample += 10
        for t in threads:
            t.join()
        elapsed = time.time() - start
        time.sleep(2)  # usage reports flush every 200 ms; memory gauge every second
        mem_after = mem()
        reloads = {n: v for e in stack.envoys for n, v in e.stats("vm_reload").items() if v}
        problems = Counter(f"{name}: {why}" for name, _, why, _ in results if why)
        statuses = Counter((name, status) for name, status, _, _ in results)
        # The ledger's request ids are the gateway's own and never reach the
        # provider, so requests are matched by count: every request the
        # provider saw (told apart by Envoy's x-request-id, which a chain's
        # attempts share) needs a ledger row of a forwarded request.
        # Requests Envoy answered itself (no healthy target) have rows too,
        # so rows may outnumber them.
        seen = {r["headers"].get("x-request-id") for r in stack.mock("GET", "/__mock/requests")}
        seen.discard(None)
        # One key sends everything; bad-key requests never reach the ledger.
        rows = stack.admin("GET", f"/admin/usage/requests?limit={args.requests}")["requests"]
        forwarded_rows = sum(1 for row in rows if row.get("forwarded", True))
        lost = max(0, len(seen) - forwarded_rows)
    finally:
        stack.stop()
    print(f"{len(results)} requests in {elapsed:.0f} s ({len(results) / elapsed:.0f}/s), {args.threads} threads")
    for (name, status), n in sorted(statuses.items()):
        print(f"  {name:<24} {status}: {n}")
    print(f"VM reloads (failures): {reloads or 0}")
    print(f"answers a client cannot understand: {sum(problems.values())}")
    for p, n in problems.most_common(10):
        print(f"  {n} x {p}")
    print(f"requests the provider saw: {len(seen)}, ledger rows of forwarded requests: {forwarded_rows}, "
          f"lost: {lost}")
    print(f"VM memory: {mem_before / 1048576:.1f} MiB before, {mem_after / 1048576:.1f} MiB after")
    print("VM memory during the run (requests done: MiB): " +
          ", ".join(f"{n}: {b / 1048576:.1f}" for n, b in timeline))
    sys.exit(1 if reloads or problems or lost else 0)


if __name__ == "__main__":
    main()
