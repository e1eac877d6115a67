#!/usr/bin/env python3
"""`make bench`: the same workload, side by side in one run, against

  (a)  the fast mock provider directly
  (b)  Envoy with the same listener and clusters, no Tollgate
  (bs) (b) streaming: 20-chunk SSE chat answers
  (fl) the floor: Tollgate's chain shape with a filter that does nothing
       else (bench/floor-filter): what the shape costs before any feature
  (c)  Envoy + Tollgate: key cached, guardrails on, usage extraction (tracing off)
  (c0) (c) with guardrails off: the chain and the core alone
  (d)  (c) + the budget reservation and usage reports to the sidecar
  (e)  (c) with an OpenAI Chat request to an Anthropic model (translation)
  (f)  (c) streaming: 20-chunk SSE chat answers
  (g)  (f) translated: an OpenAI chat stream from an Anthropic model
  (h)  (c) with an 8 KB prompt; (h0) the same with guardrails off
  (i)  (c) streaming 100 chunks; (i0) the same with guardrails off
  (t)  (c) + tracing to a healthy OTLP collector (the Python receiver):
       spans exported and dropped are reported; none may be dropped

and the time to first byte of a streamed answer, untranslated vs translated.
(h)-(h0) and (i)-(i0) are what all guardrails cost in the filter on an 8 KB
request and on a 100-chunk stream.

For each: throughput at saturation (wrk, 16 connections) and p50/p99 latency
at a fixed moderate rate (wrk, 4 connections pausing between requests), plus
the filter's VM memory (tollgate.vm.memory_bytes) before and after. Prints a
markdown table and writes it to bench/results/<date>.md.

Needs wrk (Debian package `wrk`) and `make build` plus the fast mock
(`cargo build --release -p tollgate-fast-mock`) and the floor filter
(`cargo build --target wasm32-wasip1 --release -p tollgate-floor-filter`);
`make bench` does all three.
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
FLOOR_WASM = ROOT / "target" / "wasm32-wasip1" / "release" / "tollgate_floor_filter.wasm"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello in one short sentence."}]}
SENTENCE = "Our quarterly review covers revenue, hiring and the roadmap for 2027 in detail. "
# 8 KB of prose with one e-mail and one phone number, as in tests/guardrail_eval.rs.
PROSE_8KB = SENTENCE * (8192 // len(SENTENCE) + 1) + "Contact jane@example.com or +44 20 7946 0958."

LUA = """
wrk.method = "POST"
wrk.body = %(body)s
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = %(auth)s
%(headers)s
%(extra)s
"""
PACED = "function delay() return %d end\n"


def lua_string(s: str) -> str:
    return json.dumps(s)


def wrk(url: str, body: dict, auth: str, seconds: int, connections: int, pause_ms: int | None,
        headers: dict | None = None) -> dict:
    extra = PACED % pause_ms if pause_ms else ""
    header_lines = "\n".join(f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in (headers or {}).items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA % {"body": lua_string(json.dumps(body)), "auth": lua_string(auth), "headers": header_lines,
                       "extra": extra})
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
                  mock_command=[str(FAST_MOCK)], otlp_receiver=True).start()
    try:
        key = stack.admin("POST", "/admin/keys", {"team": "bench"})["key"]
        bare = stack.add_envoy("bare", bare_cluster="provider_openai")
        budgets = stack.add_envoy("budgets", plugin_overrides={"tracing": None, "budgets": {"enforce": True}})
        # A request budget large enough never to bind: the callout is what is measured.
        key_id = next(k["id"] for k in stack.admin("GET", "/admin/keys")["keys"] if key.startswith(k["key_prefix"]))
        stack.admin("POST", "/admin/budgets", {"scope": "key", "scope_id": key_id, "kind": "requests",
                                               "limit": 1e12, "period": "daily", "mode": "hard"})
        floor = stack.add_envoy("floor", floor_wasm=FLOOR_WASM)
        unguarded = stack.add_envoy("unguarded", plugin_overrides={**plain, "guardrails": None})
        traced = stack.add_envoy("traced", plugin_overrides={"budgets": None})
        stream_body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        big = {**CHAT, "messages": [{"role": "user", "content": PROSE_8KB}]}
        chunks100 = {"x-mock-chunks": "100"}
        chat = "/v1/chat/completions"
        # letter: (name, base URL, body, Envoy whose VM memory is read, extra headers)
        variants = {
            "a": ("mock provider directly", f"http://127.0.0.1:{stack.mock_port}", CHAT, None, {}),
            "b": ("Envoy, no Tollgate", bare.base_url, CHAT, None, {}),
            "bs": ("(b), streaming 20 chunks", bare.base_url, stream_body, None, {}),
            "fl": ("floor: the chain shape, no work", floor.base_url, CHAT, None, {}),
            "c": ("Envoy + Tollgate", stack.envoy.base_url, CHAT, stack.envoy, {}),
            "c0": ("(c), guardrails off", unguarded.base_url, CHAT, unguarded, {}),
            "d": ("(c) + budget callout", budgets.base_url, CHAT, budgets, {}),
            "e": ("(c), OpenAI -> Anthropic", stack.envoy.base_url, {**CHAT, "model": "claude-haiku-4-5"},
                  stack.envoy, {}),
            "f": ("(c), streaming 20 chunks", stack.envoy.base_url, stream_body, stack.envoy, {}),
            "g": ("(f), OpenAI -> Anthropic stream", stack.envoy.base_url,
                  {**stream_body, "model": "claude-haiku-4-5"}, stack.envoy, {}),
            "h": ("(c), 8 KB prompt", stack.envoy.base_url, big, stack.envoy, {}),
            "h0": ("(h), guardrails off", unguarded.base_url, big, unguarded, {}),
            "i": ("(c), streaming 100 chunks", stack.envoy.base_url, stream_body, stack.envoy, chunks100),
            "i0": ("(i), guardrails off", unguarded.base_url, stream_body, unguarded, chunks100),
            "t": ("(c) + tracing, healthy collector", traced.base_url, CHAT, traced, {}),
        }
        chosen = args.only.split(",") if args.only else list(variants)
        rows = {}
        for letter in chosen:
            name, base, body, envoy, headers = variants[letter]
            url = base + chat
            auth = "Bearer mock-openai-key" if letter == "a" else f"Bearer {key}"
            wrk(url, body, auth, 2, 4, None, headers)  # warm-up: connections, key cache, JIT
            before = vm_memory(envoy) if envoy else None
            saturated = wrk(url, body, auth, args.seconds, 16, None, headers)
            paced = wrk(url, body, auth, args.seconds, 4, args.pause_ms, headers)
            time.sleep(1.2)  # the memory gauge refreshes every second
            after = vm_memory(envoy) if envoy else None
            rows[letter] = {"name": name, "rps": saturated["rps"], "p50": paced["p50"], "p99": paced["p99"],
                            "paced_rps": paced["rps"], "errors": saturated["errors"] + paced["errors"],
                            "mem_before": before, "mem_after": after}
            print(f"({letter}) {name}: {saturated['rps']:.0f} req/s, p50 {paced['p50']:.3f} ms, "
                  f"p99 {paced['p99']:.3f} ms, errors {rows[letter]['errors']}", flush=True)
        spans = span_counts(traced) if "t" in rows else None
        ttfb = {name: time_to_first_byte(stack.envoy.port, key, body) for name, body in [
            ("untranslated (OpenAI -> OpenAI)", stream_body),
            ("translated (OpenAI -> Anthropic)", {**stream_body, "model": "claude-haiku-4-5"})]}
    finally:
        stack.stop()
    report = table(rows, args) + ttfb_table(ttfb) + spans_line(spans)
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


def span_counts(envoy) -> dict:
    """Trace export counters of (t) once its queue has drained (up to 10 s)."""
    deadline = time.time() + 10
    while True:
        stats = envoy.stats("tollgate.trace")
        counts = {name.rsplit(".", 1)[-1]: v for name, v in stats.items()}
        if counts.get("spans_queued", 0) == 0 or time.time() > deadline:
            return counts
        time.sleep(0.2)


def spans_line(counts: dict | None) -> str:
    if counts is None:
        return ""
    return (f"\n(t) trace export: {counts.get('spans_exported', 0)} spans acknowledged by the collector, "
            f"{counts.get('spans_dropped', 0)} dropped, {counts.get('export_failures', 0)} failed exports.\n")


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
    pairs = [("fl", "b"), ("c", "fl"), ("c", "b"), ("c0", "b"), ("d", "b"), ("e", "b"), ("f", "bs"), ("g", "bs"),
             ("h", "h0"), ("i", "i0"), ("t", "c")]
    pairs = [(x, y) for x, y in pairs if x in rows and y in rows]
    if pairs:
        lines += ["", "| ratio | throughput | added p50 ms | added p99 ms |", "|---|---:|---:|---:|"]
        for x, y in pairs:
            r, base = rows[x], rows[y]
            lines.append(f"| ({x})/({y}) | {r['rps'] / base['rps']:.2f} | {r['p50'] - base['p50']:+.3f} | "
                         f"{r['p99'] - base['p99']:+.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
