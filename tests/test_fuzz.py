"""Schemathesis fuzzes the REST API from its own OpenAPI document, as a real signed-up user.

Every phase runs (examples, coverage, fuzzing, stateful), bounded and repeatable: a fixed
seed, deterministic generation and a fixed number of examples per operation
(tests/fuzz/schemathesis.toml). Every check is on: no 5xx, every status code, content type
and body as documented, and every error in its documented shape (tests/fuzz/hooks.py): the
common one, or GoTrue's under /auth/v1.

Two runs: one as a signed-up user over every operation (the operator endpoints refuse that
user, as documented), one with the metrics token over the operator endpoints, which the
app guards as in production (a METRICS_TOKEN is set).
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
METRICS_TOKEN = "fuzz-metrics-token-" + "m" * 24
OPERATOR_ENDPOINTS = r"/health/(cache|status|metrics)$"
# the event stream stays open until its generation ends (its answers are tested elsewhere);
# signing out (ours or GoTrue's) would end the fuzzer's own session halfway
NOT_FUZZED = r"/events$|/auth/logout$|^/auth/v1/logout$"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
def served_api(database_factory, migrated_template, live_server):
    # rate limits stay off (app_settings): the fuzzer's thousands of sign-ins and sign-ups
    # from one address would otherwise turn into 429s, which tests/test_limits.py covers
    with running_api(database_factory(migrated_template), METRICS_TOKEN=METRICS_TOKEN) as api:
        yield api, live_server(api.app)


def schemathesis(base_url: str, token: str, *filters: str) -> str:
    """Run schemathesis as the bearer of ``token``; insist it passed; its report."""
    run = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(FUZZ_DIR / "schemathesis.toml"),
            "run",
            f"{base_url}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            *filters,
            "--no-color",
        ],
        cwd=FUZZ_DIR,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "hooks"},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    generated = re.search(r"(\d+) generated", run.stdout)
    summary = run.stdout[run.stdout.find("API Operations:") :]
    print(f"schemathesis: {generated.group(0) if generated else 'no count'}\n{summary}")
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-2000:]
    assert generated and int(generated.group(1)) > 0, run.stdout[-5000:]
    return run.stdout


def test_the_api_survives_fuzzing_and_answers_as_documented(served_api):
    api, base_url = served_api
    user = api.user("fuzz")
    api.grant_credits(user, 1_000_000)
    report = schemathesis(base_url, user.access_token, "--exclude-path-regex", NOT_FUZZED)
    # every operation but those left out was tried: GoTrue's routes and the operator ones too
    expected = operations(api, lambda path: not re.search(NOT_FUZZED, path))
    assert any(path.startswith("/auth/v1/") for path in expected)
    assert operations_tried(report) == len(expected), report[-3000:]


def test_the_operator_endpoints_survive_fuzzing_with_the_metrics_token(served_api):
    api, base_url = served_api
    # no stateful phase: no links lead to or from these reads
    report = schemathesis(
        base_url,
        METRICS_TOKEN,
        "--include-path-regex",
        OPERATOR_ENDPOINTS,
        "--phases",
        "examples,coverage,fuzzing",
    )
    expected = operations(api, lambda path: re.search(OPERATOR_ENDPOINTS, path))
    assert len(expected) == 3
    assert operations_tried(report) == len(expected), report[-3000:]


def operations(api, keep) -> list[str]:
    """The document's operations (as "path method") whose path ``keep`` accepts."""
    paths = api.client.get("/api/v1/openapi.json").get_json()["paths"]
    return [
        f"{path} {method}"
        for path, item in paths.items()
        if keep(path)
        for method in item
        if method in HTTP_METHODS  # a path item also holds its shared parameters
    ]


def operations_tried(report: str) -> int:
    found = re.search(r"Tested: (\d+)", report)
    assert found, report[-3000:]
    return int(found.group(1))
