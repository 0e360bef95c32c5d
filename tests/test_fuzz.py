"""Schemathesis fuzzes the REST API from its own OpenAPI document, as a real signed-up user.

Every phase runs (examples, coverage, fuzzing, stateful), bounded and repeatable: a fixed
seed, deterministic generation and a fixed number of examples per operation
(tests/fuzz/schemathesis.toml). Every check is on: no 5xx, every status code, content type
and body as documented, and every error in the one error shape (tests/fuzz/hooks.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from api_support import running_api

FUZZ_DIR = Path(__file__).parent / "fuzz"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# the event stream stays open until its generation ends (its answers are tested elsewhere);
# signing out would end the fuzzer's own session halfway; the operator endpoints under
# /health are open in local work without a METRICS_TOKEN, which their own suite covers with
# and without one; the GoTrue-compatible /auth/v1 routes answer as GoTrue does (400 for bad
# credentials, extra fields accepted), which the official client's tests and the docs
# page's shape tests cover
NOT_FUZZED = r"/events$|/auth/logout$|^/auth/v1/|/health/(cache|status|metrics)$"


@pytest.fixture
def served_api(database_factory, migrated_template, live_server):
    with running_api(database_factory(migrated_template)) as api:
        yield api, live_server(api.app)


def test_the_api_survives_fuzzing_and_answers_as_documented(served_api):
    api, base_url = served_api
    user = api.user("fuzz")
    api.grant_credits(user, 1_000_000)
    run = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(FUZZ_DIR / "schemathesis.toml"),
            "run",
            f"{base_url}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {user.access_token}",
            "--exclude-path-regex",
            NOT_FUZZED,
            "--no-color",
        ],
        cwd=FUZZ_DIR,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "hooks"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    generated = re.search(r"(\d+) generated", run.stdout)
    summary = run.stdout[run.stdout.find("API Operations:") :]
    print(f"schemathesis: {generated.group(0) if generated else 'no count'}\n{summary}")
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-2000:]
    assert generated and int(generated.group(1)) > 0, run.stdout[-5000:]
