"""The Procfile's web process spreads connections over its workers.

Each gunicorn worker listens on a socket of its own (``--reuse-port``) and the kernel hands
every new connection to one of them. On one shared socket, whichever worker woke first
accepted: a burst of keep-alive connections could all land on one worker and leave the
other idle, halving throughput while they stayed open.
"""

from __future__ import annotations

import collections
import os
import re
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from harness.servers import LIVENESS, REPO_ROOT, free_port, procfile_command, wait_until_live

WORKERS = 2
CONNECTIONS = 40  # the chance that the kernel's hash puts all of them on one worker: 2^-39


def sockets_by_process(port: int, state: str) -> collections.Counter:
    """How many TCP sockets on ``port`` in ``state`` each process holds."""
    listed = subprocess.run(
        ["ss", "-tnpH", "state", state, f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return collections.Counter(re.findall(r"pid=(\d+)", listed))


def test_each_worker_listens_on_its_own_socket_and_both_get_connections(db_url, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "APP_ENV": "development",
        "DATABASE_URL": db_url,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": str(WORKERS),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    with ExitStack() as stack:
        web = subprocess.Popen(
            ["bash", "-c", f"exec {procfile_command('web')}"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        stack.callback(web.wait, timeout=30)
        stack.callback(web.terminate)
        wait_until_live(f"http://127.0.0.1:{port}{LIVENESS}", web, seconds=60)

        # the worker class comes from gunicorn.conf.py: gunicorn's own refusals are JSON too
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n")
            answer = conn.recv(65536)
        assert answer.startswith(b"HTTP/1.1 414 "), answer[:200]
        assert b'"error": "request_uri_too_long"' in answer, answer

        listeners = sockets_by_process(port, "listening")
        assert len(listeners) == WORKERS, f"listening sockets by process: {listeners}"
        assert str(web.pid) not in listeners, "the master holds no socket the workers share"

        for _ in range(CONNECTIONS):
            stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        deadline = time.monotonic() + 10
        while sum((accepted := sockets_by_process(port, "established")).values()) < CONNECTIONS:
            assert time.monotonic() < deadline, f"accepted so far: {accepted}"
            time.sleep(0.05)
        assert set(accepted) == set(listeners), f"connections by worker: {accepted}"
