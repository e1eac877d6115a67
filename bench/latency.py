#!/usr/bin/env python3
"""Added latency of the Tollgate filter: the same small chat request, sent
sequentially over keep-alive connections to (a) the mock provider directly,
(b) Envoy without Tollgate and (c) Envoy with Tollgate (key cached), in
interleaved rounds so drift hits all three alike. Prints medians and p99.

Usage: python3 bench/latency.py [--requests 3000]   (after `make build`)
"""

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from stack import Stack  # noqa: E402

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}).encode()


def timed_requests(port: int, headers: dict, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    for _ in range(n):
        start = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body=BODY, headers=headers)
        response = conn.getresponse()
        response.read()
        out.append(time.perf_counter() - start)
        if response.status != 200:
            raise SystemExit(f"port {port}: HTTP {response.status}")
    conn.close()
    return out


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="per target")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), envoy_log_level="warning").start()
        try:
            bare = stack.add_envoy("envoy-bare", bare_cluster="provider_openai")
            key = stack.admin("POST", "/admin/keys", {"team": "bench"})["key"]
            targets = {
                "mock provider directly": (stack.mock_port, {"authorization": "Bearer mock-openai-key"}),
                "envoy, no tollgate": (bare.port, {"authorization": f"Bearer {key}"}),
                "envoy + tollgate": (stack.envoy.port, {"authorization": f"Bearer {key}"}),
            }
            samples = {name: [] for name in targets}
            for name, (port, headers) in targets.items():
                timed_requests(port, headers, 200)  # warm up: connections, caches, JIT
            per_round = max(1, args.requests // args.rounds)
            for _ in range(args.rounds):
                for name, (port, headers) in targets.items():
                    samples[name] += timed_requests(port, headers, per_round)
        finally:
            stack.stop()
    print(f"{'target':<26}{'p50 ms':>9}{'p99 ms':>9}   ({len(samples['envoy + tollgate'])} sequential requests each)")
    for name, values in samples.items():
        print(f"{name:<26}{statistics.median(values) * 1000:>9.3f}{percentile(values, 99) * 1000:>9.3f}")
    added = statistics.median(samples["envoy + tollgate"]) - statistics.median(samples["envoy, no tollgate"])
    print(f"\nmedian added by tollgate: {added * 1000:.3f} ms")


if __name__ == "__main__":
    main()
