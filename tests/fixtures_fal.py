"""The fake FAL for the pipeline suites: one per test process, reset for every test.

``fake_fal`` starts it (HTTPS on the port ``reserve_queue_host`` chose, a trustme CA that
``SSL_CERT_FILE`` makes the process trust) and points the pipeline's settings at it:
``FAL_KEY``, ``FAL_JWKS_URL``.
"""

from __future__ import annotations

import os
import tempfile

import pytest
import trustme
from fakes.fal import FakeFal, reserve_queue_host


@pytest.fixture(scope="session")
def fal_server():
    ca = trustme.CA()
    with tempfile.NamedTemporaryFile(suffix=".pem", delete=False) as bundle:
        bundle.write(ca.cert_pem.bytes())
    server = FakeFal(ca, reserve_queue_host()).start()
    previous = {name: os.environ.get(name) for name in ("SSL_CERT_FILE", "FAL_KEY", "FAL_JWKS_URL")}
    os.environ.update(SSL_CERT_FILE=bundle.name, FAL_KEY="fake-id:fake-secret")
    os.environ["FAL_JWKS_URL"] = server.jwks_url
    yield server
    server.stop()
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    os.unlink(bundle.name)


@pytest.fixture
def fake_fal(fal_server):
    fal_server.reset()
    yield fal_server
    fal_server.reset()
