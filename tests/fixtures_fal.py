"""The fake FAL for the pipeline suites: one per test process, reset for every test.

``fal_server`` starts it once per process (HTTPS on the port ``reserve_queue_host`` chose,
with a trustme CA). ``fake_fal`` resets it and, for that test only, points this process at
it (``FakeFal.client_environment``: ``SSL_CERT_FILE`` to trust the CA, ``FAL_KEY``,
``FAL_JWKS_URL``); a module-scoped app that reads them at its start sets them for its
module. Never for the whole process: an app built later in the same process with
``FAL_KEY`` still set would use the real provider's client instead of the simulated one,
and its simulated routes would be gone.
"""

from __future__ import annotations

import pytest
import trustme
from fakes.fal import FakeFal, reserve_queue_host


@pytest.fixture(scope="session")
def fal_server():
    server = FakeFal(trustme.CA(), reserve_queue_host()).start()
    yield server
    server.stop()


@pytest.fixture
def fake_fal(fal_server, monkeypatch):
    for name, value in fal_server.client_environment().items():
        monkeypatch.setenv(name, value)
    fal_server.reset()
    yield fal_server
    fal_server.reset()
