"""A real Redis Cluster of a test run's own: three redis-server primaries started with
``--cluster-enabled yes`` on free loopback ports (client and bus) in a temporary
directory, joined by ``redis-cli --cluster create``, and stopped afterwards.

    with LocalCluster(tmp_path) as cluster:
        cluster.url         # redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3
        cluster.nodes       # a plain client of each node

Every node logs every command it runs in its SLOWLOG (``slowlog-log-slower-than 0``), so
a test can read which keys each script was given. The shared Redis at 6379 is never
touched. A missing redis-server or redis-cli is a failure, never a skip.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from harness.servers import free_port

PRIMARIES = 3
START_SECONDS = 30.0
NODE_TIMEOUT_MS = 2000
SLOWLOG_LENGTH = 100_000


class LocalCluster:
    def __init__(self, directory: Path, primaries: int = PRIMARIES) -> None:
        self.directory = directory
        self.ports = [free_port() for _ in range(primaries)]
        self.processes: list[subprocess.Popen] = []
        self.nodes: list[redis.Redis] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def __enter__(self) -> LocalCluster:
        for tool in ("redis-server", "redis-cli"):
            if shutil.which(tool) is None:
                pytest.fail(f"{tool} is not installed (apt-get install redis-server)")
        try:
            for port in self.ports:
                self._start_node(port)
            for node in self.nodes:
                _wait_for(node.ping, "a cluster node did not start")
            self._create()
            for node in self.nodes:
                _wait_for(lambda n=node: _state(n) == "ok", "the cluster never reached state ok")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start_node(self, port: int) -> None:
        folder = self.directory / f"node-{port}"
        folder.mkdir(parents=True)
        command = [
            *("redis-server", "--port", str(port), "--cluster-port", str(free_port())),
            *("--bind", "127.0.0.1", "--dir", str(folder), "--save", "", "--appendonly", "no"),
            *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
            *("--maxmemory-policy", "noeviction"),
            *("--slowlog-log-slower-than", "0", "--slowlog-max-len", str(SLOWLOG_LENGTH)),
        ]
        log = (folder / "redis.log").open("wb")
        self.processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        log.close()
        self.nodes.append(redis.Redis(port=port, socket_timeout=5, decode_responses=True))

    def _create(self) -> None:
        addresses = [f"127.0.0.1:{port}" for port in self.ports]
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=START_SECONDS,
            check=False,
        )
        if created.returncode != 0:
            pytest.fail(f"redis-cli --cluster create failed:\n{created.stdout}{created.stderr}")

    def node_serving(self, slot: int) -> redis.Redis:
        """The client of the primary that serves slot."""
        for start, end, primary, *_ in self.nodes[0].execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                return self.nodes[self.ports.index(int(primary[1]))]
        raise AssertionError(f"no node serves slot {slot}")

    def stop(self, index: int) -> None:
        """Stop one node, as a crash would."""
        process = self.processes[index]
        process.kill()
        process.wait(timeout=10)

    def __exit__(self, *exc) -> None:
        for node in self.nodes:
            node.close()
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _state(node: redis.Redis) -> str:
    return node.cluster("info")["cluster_state"]


def _wait_for(condition, failure: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            if condition():
                return
        except redis.RedisError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            pytest.fail(failure)
        time.sleep(0.05)
