#!/usr/bin/env python3
"""`make bench`: the same workload, side by side in one run, against

  (a) the fast mock provider directly
  (b) Envoy with the same listener and clusters, no Tollgate
  (c) Envoy + Tollgate: key cached, guardrails on, usage extraction (tracing off)
  (d) (c) + the budget reservation and usage reports to the sidecar
  (e) (c) with an OpenAI Chat request to an Anthropic model (translation)
  (f) (c) streaming: 20-chunk SSE chat answers
  (g) (f) translated: an OpenAI chat stream from an Anthropic model

and the time to first byte of a streamed answer, untranslated vs translated.

For each: throughput at saturation (wrk, 16 connections) and p50/p99 latency
at a fixed moderate rate (wrk, 4 connections pausing between requests), plus
the filter's VM memory (tollgate.vm.memory_bytes) before and after. Prints a
markdown table and writes it to bench/results/<date>.md.

Needs wrk (Debian package `wrk`) and `make build` plus the fast mock
(`cargo build --release -p tollgate-fast-mock`); `make bench` does both.
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from stack import Stack  # noqa: E402

FAST_MOCK = ROOT / "target" / "release" / "tollgate-fast-mock"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello in one short sentence."}]}

LUA = """
wrk.method = "POST"
wrk.body = %(body)s
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = %(auth)s
%(extra)s
"""
PACED = "function delay() return %d end\n"


def lua_string(s: str) -> str:
    return json.dumps(s)


def wrk(url: str, body: dict, auth: str, seconds: int, connections: int, pause_ms: int | None) -> dict:
    extra = PACED % pause_ms if pause_ms else ""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA % {"body": lua_string(json.dumps(body)), "auth": lua_string(auth), "extra": extra})
        script = f.name
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, url],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": percentile(out, "50%"), "p99": percentile(out, "99%"),
            "errors": int(errors.group(1)) if errors else 0}


def percentile(out: str, label: str) -> float:
    """wrk's latency distribution line, in milliseconds."""
    m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def vm_memory(envoy) -> int | None:
    stats = envoy.stats("tollgate.vm.memory_bytes")
    return next(iter(stats.values()), None)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--pause-ms", type=int, default=4, help="pause per connection at the fixed rate")
    parser.add_argument("--only", help="comma-separated variant letters")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tollgate-bench-"))
    plain = {"tracing": None, "budgets": None}
    stack = Stack(tmp, plugin_overrides=plain, envoy_log_level="error",
                  mock_command=[str(FAST_MOCK)]).start()
    try:
        key = stack.admin("POST", "/admin/keys", {"team": "bench"})["key"]
        bare = stack.add_envoy("bare", bare_cluster="provider_openai")
        budgets = stack.add_envoy("budgets", plugin_overrides={"tracing": None, "budgets": {"enforce": True}})
        # A request budget large enough never to bind: the callout is what is measured.
        key_id = next(k["id"] for k in stack.admin("GET", "/admin/keys")["keys"] if key.startswith(k["key_prefix"]))
        stack.admin("POST", "/admin/budgets", {"scope": "key", "scope_id": key_id, "kind": "requests",
                                               "limit": 1e12, "period": "daily", "mode": "hard"})
        stream_body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        variants = {
            "a": ("mock provider directly", f"http://127.0.0.1:{stack.mock_port}/v1/chat/completions", CHAT, None),
            "b": ("Envoy, no Tollgate", f"{bare.base_url}/v1/chat/completions", CHAT, None),
            "c": ("Envoy + Tollgate", f"{stack.envoy.base_url}/v1/chat/completions", CHAT, stack.envoy),
            "d": ("(c) + budget callout", f"{budgets.base_url}/v1/chat/completions", CHAT, budgets),
            "e": ("(c), OpenAI -> Anthropic", f"{stack.envoy.base_url}/v1/chat/completions",
                  {**CHAT, "model": "claude-haiku-4-5"}, stack.envoy),
            "f": ("(c), streaming 20 chunks", f"{stack.envoy.base_url}/v1/chat/completions", stream_body,
                  stack.envoy),
            "g": ("(f), OpenAI -> Anthropic stream", f"{stack.envoy.base_url}/v1/chat/completions",
                  {**stream_body, "model": "claude-haiku-4-5"}, stack.envoy),
        }
        chosen = args.only.split(",") if args.only else list(variants)
        rows = {}
        for letter in chosen:
            name, url, body, envoy = variants[letter]
            auth = "Bearer mock-openai-key" if letter == "a" else f"Bearer {key}"
            wrk(url, body, auth, 2, 4, None)  # warm-up: connections, key cache, JIT
            before = vm_memory(envoy) if envoy else None
            saturated = wrk(url, body, auth, args.seconds, 16, None)
            paced = wrk(url, body, auth, args.seconds, 4, args.pause_ms)
            time.sleep(1.2)  # the memory gauge refreshes every second
            after = vm_memory(envoy) if envoy else None
            rows[letter] = {"name": name, "rps": saturated["rps"], "p50": paced["p50"], "p99": paced["p99"],
                            "paced_rps": paced["rps"], "errors": saturated["errors"] + paced["errors"],
                            "mem_before": before, "mem_after": after}
            print(f"({letter}) {name}: {saturated['rps']:.0f} req/s, p50 {paced['p50']:.3f} ms, "
                  f"p99 {paced['p99']:.3f} ms, errors {rows[letter]['errors']}", flush=True)
        ttfb = {name: time_to_first_byte(stack.envoy.port, key, body) for name, body in [
            ("untranslated (OpenAI -> OpenAI)", stream_body),
            ("translated (OpenAI -> Anthropic)", {**stream_body, "model": "claude-haiku-4-5"})]}
    finally:
        stack.stop()
    report = table(rows, args) + ttfb_table(ttfb)
    print("\n" + report)
    out = ROOT / "bench" / "results" / f"{datetime.date.today().isoformat()}.md"
    out.write_text(report)
    print(f"written to {out.relative_to(ROOT)}")


def time_to_first_byte(port: int, key: str, body: dict, n: int = 300) -> tuple[float, float]:
    """p50 and p99 ms from sending a streamed request to its first body byte."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    samples = []
    payload = json.dumps(body).encode()
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    for _ in range(n):
        start = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body=payload, headers=headers)
        response = conn.getresponse()
        response.read(1)
        samples.append((time.perf_counter() - start) * 1000)
        response.read()
    conn.close()
    samples.sort()
    return samples[len(samples) // 2], samples[min(len(samples) - 1, len(samples) * 99 // 100)]


def ttfb_table(ttfb: dict) -> str:
    lines = ["", "| streamed answer, time to first byte | p50 ms | p99 ms |", "|---|---:|---:|"]
    lines += [f"| {name} | {p50:.3f} | {p99:.3f} |" for name, (p50, p99) in ttfb.items()]
    return "\n".join(lines) + "\n"


def mib(v):
    return "-" if v is None else f"{v / 1048576:.1f}"


def table(rows: dict, args) -> str:
    lines = [
        f"# make bench, {datetime.date.today().isoformat()}",
        "",
        f"2-core machine, Envoy 1 worker, wrk 1 thread; saturation: 16 connections for {args.seconds} s; "
        f"fixed rate: 4 connections pausing {args.pause_ms} ms between requests. Reproduce: `make bench`.",
        "",
        "| variant | req/s at saturation | req/s at fixed rate | p50 ms | p99 ms | errors | VM MiB before/after |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for letter, r in rows.items():
        lines.append(f"| ({letter}) {r['name']} | {r['rps']:.0f} | {r['paced_rps']:.0f} | {r['p50']:.3f} | "
                     f"{r['p99']:.3f} | {r['errors']} | {mib(r['mem_before'])} / {mib(r['mem_after'])} |")
    if "b" in rows:
        b = rows["b"]
        lines += ["", "| ratio to (b) | throughput | added p50 ms | added p99 ms |", "|---|---:|---:|---:|"]
        for letter in ["c", "d", "e", "f", "g"]:
            if letter in rows:
                r = rows[letter]
                lines.append(f"| ({letter})/(b) | {r['rps'] / b['rps']:.2f} | {r['p50'] - b['p50']:+.3f} | "
                             f"{r['p99'] - b['p99']:+.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
