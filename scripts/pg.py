"""A throwaway PostgreSQL server for end-to-end tests (Debian's `postgresql`
package): `Postgres.start()` initialises a cluster in a new directory under
the system temp dir (the server user must reach it), starts it on a free
port with its socket there too, and `stop()` removes it. `start()` returns
None when PostgreSQL is not installed."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def find_bin() -> Path | None:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name))
    for d in reversed(dirs):
        if (Path(d) / "initdb").exists():
            return Path(d)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(args: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class Postgres:
    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="tollgate-pg-"))
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @classmethod
    def start(cls) -> "Postgres | None":
        bin_dir = find_bin()
        if bin_dir is None:
            return None
        pg = cls(bin_dir)
        pg._start()
        return pg

    def _start(self):
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        subprocess.run(_as_server_user([str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U",
                                        "postgres", "-E", "UTF8", "--no-sync"]),
                       check=True, capture_output=True)
        log = open(self.dir / "server.log", "w")
        self.proc = subprocess.Popen(
            _as_server_user([str(self.bin / "postgres"), "-D", str(data), "-k", str(self.dir), "-h", "127.0.0.1",
                             "-p", str(self.port), "-c", "fsync=off", "-c", "synchronous_commit=off",
                             "-c", "max_connections=300"]),
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            ready = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                   capture_output=True)
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not start: {(self.dir / 'server.log').read_text()}")

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
