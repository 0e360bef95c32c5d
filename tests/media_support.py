"""A world for the media, live-status and outbound-webhook suites: the app on a database of
the module's own, served over real HTTP (streams, the simulated provider's files and
webhooks need a real server), with a media directory of its own.

``world.api`` is an ``api_support.Api`` on the same app (test client calls); ``world.url``
the server's base URL; ``world.settings`` the app's settings. ``world.advance(gen, status,
**fields)`` moves a generation forward the way the worker does (service role RPC).
``Receiver`` records what it is sent; ``unanswering(address, port)`` makes connecting
there time out.
"""

from __future__ import annotations

import json
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from api_support import Api
from fixtures_app import app_settings
from psycopg.rows import dict_row
from werkzeug.serving import make_server

from backend import close_app, create_app

ADVANCE = (
    "select * from public.record_generation_progress(%s, %s::public.generation_status, %s, %s)"
)


@dataclass
class World:
    api: Api
    url: str
    settings: object
    db_url: str

    def advance(self, generation_id, status: str, request_id=None, outputs=None) -> dict:
        with psycopg.connect(self.db_url, row_factory=dict_row) as conn, conn.transaction():
            conn.execute("select set_config('role', 'service_role', true)")
            outputs = json.dumps(outputs) if outputs is not None else None
            return conn.execute(ADVANCE, (generation_id, status, request_id, outputs)).fetchone()


@contextmanager
def running_world(db_url: str, media_dir: str, **overrides):
    holder: dict = {}
    server = make_server("127.0.0.1", 0, lambda e, s: holder["app"](e, s), threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    settings = app_settings(db_url, MEDIA_DIR=media_dir, PUBLIC_URL=url, **overrides)
    app = create_app(settings)
    holder["app"] = app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield World(Api(app, db_url), url, app.config["SETTINGS"], db_url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        close_app(app)


class Receiver:
    """An HTTP endpoint on loopback that records what it is sent and answers with the next
    status of ``answers`` (the last one repeats)."""

    def __init__(self, answers=(200,)):
        self.requests: list[dict] = []
        self.answers = list(answers)
        self.holds: dict[int, threading.Event] = {}  # request n (from 1) answers once set
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.arrived:
                    receiver.requests.append({"headers": dict(self.headers), "body": body})
                    status = receiver.answers[
                        min(len(receiver.requests), len(receiver.answers)) - 1
                    ]
                    receiver.arrived.notify_all()
                    hold = receiver.holds.get(len(receiver.requests))
                if hold is not None:
                    hold.wait(30)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict]:
        """The first ``count`` requests; fails (not hangs) if they never come."""
        with self.arrived:
            arrived = self.arrived.wait_for(lambda: len(self.requests) >= count, timeout)
        assert arrived, f"expected {count} request(s), got {len(self.requests)}"
        return self.requests[:count]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@contextmanager
def unanswering(address: str, port: int):
    """A listener on address:port whose queue of connections is full and never accepted:
    the kernel drops any further connection attempt unanswered, as a host that is down
    does, so a connect there times out (it is not refused)."""
    listener = socket.create_server((address, port), backlog=0)
    fillers = [socket.socket() for _ in range(3)]
    try:
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex((address, port))
        with socket.socket() as probe:
            probe.settimeout(0.5)
            with pytest.raises(TimeoutError):
                probe.connect((address, port))
        yield
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
