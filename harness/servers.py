"""Real servers on loopback for tests and benchmarks: free ports, and gunicorn serving the
app for the length of a block, started as the Procfile starts it.

    with Server(database_url, env={"CACHE_ENABLED": "true"}) as server:
        requests.get(server.url("/api/v1/health/live"))
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LIVENESS = "/api/v1/health/live"


def procfile_command(process: str) -> str:
    """The command the Procfile gives ``process`` (web, worker)."""
    for line in (REPO_ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            return command.strip()
    raise AssertionError(f"no {process} process in the Procfile")


def free_port() -> int:
    """A loopback port nothing listens on now (the OS picks it; nothing holds it after)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    """gunicorn (gthread workers) serving ``app`` against a database, for a ``with`` block.

    ``env`` adds to this process's environment (development defaults unless it says
    otherwise); ``log`` collects the server's output, else it goes to this process's. The
    block starts once the liveness route answers; on exit gunicorn gets SIGTERM (its
    graceful stop), then its process group SIGKILL.
    """

    database_url: str
    env: dict | None = None
    workers: int = 2
    threads: int = 4
    port: int = field(default_factory=free_port)
    log: Path | None = None
    startup_seconds: float = 30.0
    app: str = "backend:create_app()"

    def __post_init__(self):
        self.process: subprocess.Popen | None = None

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Server:
        env = {"APP_ENV": "development", **os.environ, **(self.env or {})}
        env["DATABASE_URL"] = self.database_url
        command = [
            # the worker class and metrics settings come from ./gunicorn.conf.py, as for the
            # Procfile
            *(sys.executable, "-m", "gunicorn"),
            *("--workers", str(self.workers), "--threads", str(self.threads)),
            # as the Procfile: a listening socket per worker, so the kernel spreads
            # connections (one worker alone keeps the master's socket: no gap on a restart)
            *(("--reuse-port",) if self.workers > 1 else ()),
            *("--bind", f"127.0.0.1:{self.port}", "--log-level", "warning", self.app),
        ]
        output = self.log.open("wb") if self.log else None
        try:
            self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
                command,
                cwd=REPO_ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT if output else None,
                start_new_session=True,
            )
        finally:
            if output:
                output.close()
        self._wait_until_live()
        return self

    def __exit__(self, *exc) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def worker_pids(self) -> list[int]:
        """The pids of gunicorn's workers: the master's children, from /proc."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if parent_pid(stat.read_text()) == self.process.pid:
                    pids.append(int(stat.parent.name))
            except (FileNotFoundError, ProcessLookupError):
                continue  # a process that ended while we looked
        return pids

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log else ""

    def _wait_until_live(self) -> None:
        try:
            wait_until_live(self.url(LIVENESS), self.process, self.startup_seconds)
        except RuntimeError as error:
            self.__exit__()
            raise RuntimeError(f"gunicorn: {error}\n{self.log_tail()}") from None


def wait_until_live(url: str, process: subprocess.Popen, seconds: float) -> None:
    """Return once ``url`` answers 200; RuntimeError if ``process`` exits first or
    ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds}s")


def parent_pid(stat: str) -> int:
    """The ppid field of /proc/<pid>/stat; the name before it may hold spaces and parens."""
    return int(stat[stat.rindex(")") + 2 :].split()[1])
