"""The load scenarios (bench/load/): a short real run of every scenario, and the regression
check on constructed figures.

The real run goes through the same entry point as `make load` (``python -m bench.load``):
its own database, Redis, gunicorn and job worker on the simulated FAL, locust in a process
of its own, a few seconds per scenario with two users. It asserts the shape of the JSON,
that every endpoint each scenario exists for was called, that the refusals the scenarios
plan came back as the expected 4xx, and that nothing unexpected happened. Never speed.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import yaml

from bench.load import compare
from bench.load.config import ConfigProblem, load
from bench.load.names import TASKS, tasks_of
from harness.servers import REPO_ROOT

# what each scenario's tasks call; the setup steps (sign-ups, teams...) come on top
ENDPOINTS = {
    "signup_login": [
        "POST /auth/signup",
        "POST /auth/login",
        "POST /auth/login (wrong password)",
        "GET /auth/me",
        "POST /auth/refresh",
        "POST /auth/logout",
        "GET /auth/me (after logout)",
    ],
    "authorization": [
        "POST /generations/{id}/authorize (own)",
        "POST /generations/{id}/authorize (shared)",
        "POST /generations/{id}/authorize (denied)",
        "GET /generations/{id} (shared)",
        "GET /generations/{id} (denied)",
        "PUT /generations/{id}/share",
        "POST /invitations/accept",
    ],
    "generation": [
        "POST /generations",
        "POST /generations (idempotent replay)",
        "POST /generations (parameter outside the schema)",
        "GET /generations/{id}",
        "GET /generations",
        "GET /credits/balance",
    ],
    "teams": [
        "POST /teams",
        "POST /teams/{id}/invite",
        "POST /invitations/accept",
        "PUT /projects/{id}/teams/{team_id}",
        "GET /teams/{id}/members",
        "GET /teams/{id}/permissions (viewer)",
        "POST /generations (editor, team project)",
        "PATCH /generations/{id} (editor)",
        "GET /generations/{id} (viewer)",
        "GET /generations?project_id (viewer)",
        "PATCH /generations/{id} (viewer: refused)",
        "POST /generations (viewer, team project: refused)",
        "POST /teams/{id}/invite (viewer: refused)",
        "DELETE /teams/{id}/invitations/{invitation_id}",
    ],
    "journey": [
        "POST /auth/signup",
        "POST /projects",
        "POST /generations",
        "GET /generations/{id} (following)",
        "FLOW submitted -> completed",
        "POST /teams",
        "POST /teams/{id}/invite",
        "POST /invitations/accept",
        "PUT /generations/{id}/share",
        "GET /generations/{id} (teammate)",
        "GET /generations/{id}/media (teammate)",
        "POST /generations/{id}/authorize (teammate)",
    ],
}
# the refusals the scenarios plan, each with the status the rules give
EXPECTED_4XX = {
    ("signup_login", "POST /auth/login (wrong password)"): {"401"},
    ("signup_login", "GET /auth/me (after logout)"): {"401"},
    ("authorization", "GET /generations/{id} (denied)"): {"404"},
    ("generation", "POST /generations (parameter outside the schema)"): {"400", "422"},
    ("teams", "PATCH /generations/{id} (viewer: refused)"): {"403"},
    ("teams", "POST /generations (viewer, team project: refused)"): {"403"},
    ("teams", "POST /teams/{id}/invite (viewer: refused)"): {"403"},
}
# a journey waits for its generation to go through the worker and fake FAL to completion,
# which on a fresh clone (nothing compiled yet) took longer than 8 s once, and, beside the
# rest of the suite on two cores, longer than the 20 s run once more
SECONDS = {"signup_login": 3, "authorization": 4, "generation": 3, "teams": 4, "journey": 30}
RATE_LIMITS = {
    "RATE_LIMIT_PER_IP": "1000000/hour",
    "RATE_LIMIT_PER_USER": "1000000/hour",
    "RATE_LIMIT_AUTH_PER_IP": "1000000/minute",
    "RATE_LIMIT_AUTH_PER_EMAIL": "1000/minute",
    "RATE_LIMIT_GENERATIONS_PER_USER": "10000/minute",
}


def short_config() -> dict:
    return {
        "ceiling": {"users": 2, "seconds": max(SECONDS.values())},
        "request_timeout_seconds": 30,
        "app": {"workers": 2, "threads": 4, "env": {"BCRYPT_COST": "4", **RATE_LIMITS}},
        "scenarios": {
            name: {
                "users": 2,
                "spawn_rate": 2,
                "seconds": SECONDS[name],
                "wait": [0, 0.05],
                "weights": dict.fromkeys(tasks, 1),
            }
            for name, tasks in TASKS.items()
        },
    }


@pytest.fixture(scope="module")
def short_run(admin_url, tmp_path_factory):
    folder = tmp_path_factory.mktemp("load")
    config, out = folder / "short.yaml", folder / "load.json"
    config.write_text(yaml.safe_dump(short_config()), encoding="utf-8")
    finished = subprocess.run(
        [sys.executable, "-m", "bench.load", "--config", str(config), "--json", str(out)],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": admin_url},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout[-6000:] + finished.stderr[-4000:]
    return json.loads(out.read_text(encoding="utf-8"))


def test_every_scenario_ran_and_wrote_its_figures(short_run):
    assert set(short_run["scenarios"]) == set(TASKS)
    assert short_run["app"] == {"workers": 2, "threads": 4, "env": short_config()["app"]["env"]}
    for figures in short_run["scenarios"].values():
        assert figures["requests"] == sum(e["requests"] for e in figures["endpoints"].values())
        assert figures["requests_per_second"] > 0
        for endpoint in figures["endpoints"].values():
            assert endpoint["p50_ms"] <= endpoint["p95_ms"] <= endpoint["p99_ms"]
            assert endpoint["p99_ms"] <= endpoint["max_ms"]
            assert set(endpoint) >= {"requests", "requests_per_second", "expected_4xx"}


@pytest.mark.parametrize("scenario", sorted(ENDPOINTS))
def test_each_scenario_called_its_endpoints_without_an_unexpected_error(short_run, scenario):
    figures = short_run["scenarios"][scenario]
    assert figures["unexpected_errors"] == 0, figures["unexpected_samples"]
    assert set(figures["unexpected_by_kind"].values()) == {0}
    assert figures["jobs_left_after_drain"] == 0
    called = {name for name, row in figures["endpoints"].items() if row["requests"]}
    assert set(ENDPOINTS[scenario]) <= called, set(ENDPOINTS[scenario]) - called


def test_planned_refusals_are_counted_as_expected_4xx(short_run):
    for (scenario, endpoint), statuses in EXPECTED_4XX.items():
        row = short_run["scenarios"][scenario]["endpoints"][endpoint]
        assert row["expected_4xx"], (scenario, endpoint)
        assert set(row["expected_4xx"]) <= statuses, (scenario, endpoint, row["expected_4xx"])
        assert sum(row["expected_4xx"].values()) == row["requests"]
    total = sum(figures["expected_4xx"] for figures in short_run["scenarios"].values())
    assert total >= len(EXPECTED_4XX)


# the regression check, on constructed figures ------------------------------------------


def figures(p95_authorize: float, p95_login: float, unexpected: int = 0) -> dict:
    def endpoint(p95: float, errors: dict | None = None) -> dict:
        return {
            "requests": 100,
            "p50_ms": p95 / 2,
            "p95_ms": p95,
            "p99_ms": p95 * 1.5,
            "unexpected": errors or {},
        }

    kinds = {"5xx": unexpected, "timeout": 0}
    return {
        "scenarios": {
            "authorization": {
                "unexpected_errors": unexpected,
                "unexpected_by_kind": kinds,
                "endpoints": {
                    "POST /generations/{id}/authorize (own)": endpoint(
                        p95_authorize, {"5xx": unexpected} if unexpected else None
                    ),
                },
            },
            "signup_login": {
                "unexpected_errors": 0,
                "unexpected_by_kind": {"5xx": 0},
                "endpoints": {"POST /auth/login": endpoint(p95_login)},
            },
        }
    }


BASELINE = figures(p95_authorize=40.0, p95_login=200.0)


def test_the_regression_check_passes_within_the_tolerance(capsys):
    run = figures(p95_authorize=55.0, p95_login=150.0)  # +38% and -25%
    assert compare.check(run, BASELINE, max_slowdown=0.5, min_increase_ms=5)
    printed = capsys.readouterr().out
    assert "+38%" in printed and "-25%" in printed
    assert "no regression" in printed


def test_the_regression_check_fails_on_a_slowdown(capsys):
    run = figures(p95_authorize=70.0, p95_login=210.0)  # +75% and +5%
    assert not compare.check(run, BASELINE, max_slowdown=0.5, min_increase_ms=5)
    rows = {row.endpoint: row.verdict for row in compare.compare(run, BASELINE, 0.5, 5)}
    assert rows == {"POST /generations/{id}/authorize (own)": "SLOWER", "POST /auth/login": "ok"}
    assert "1 failing row(s)" in capsys.readouterr().out


def test_a_slowdown_smaller_than_the_absolute_floor_passes():
    run = figures(p95_authorize=70.0, p95_login=200.0)  # +75%, but only 30 ms more
    assert compare.check(run, BASELINE, max_slowdown=0.5, min_increase_ms=50)


def test_the_regression_check_fails_on_any_unexpected_error():
    run = figures(p95_authorize=40.0, p95_login=200.0, unexpected=1)
    verdicts = [row.verdict for row in compare.compare(run, BASELINE, 0.5, 5)]
    assert verdicts.count("ERRORS") == 2  # the endpoint's row and the scenario's
    assert not compare.check(run, BASELINE, max_slowdown=0.5, min_increase_ms=5)


def test_an_endpoint_of_the_baseline_that_was_not_called_fails():
    run = copy.deepcopy(BASELINE)
    run["scenarios"]["signup_login"]["endpoints"] = {}
    rows = compare.compare(run, BASELINE, 0.5, 5)
    assert [row.verdict for row in rows if row.scenario == "signup_login"] == ["MISSING"]


def test_the_stored_baseline_has_the_shape_of_a_run_of_the_stored_configuration():
    config = load(REPO_ROOT / "bench" / "load" / "scenarios.yaml", tasks_of)
    baseline = json.loads((REPO_ROOT / "bench" / "load" / "baseline.json").read_text())
    assert set(baseline["scenarios"]) == set(config.scenarios) == set(TASKS)
    for name, scenario in baseline["scenarios"].items():
        assert scenario["unexpected_errors"] == 0
        assert scenario["config"]["users"] == config.scenarios[name].users
        assert set(ENDPOINTS[name]) <= set(scenario["endpoints"])
    assert compare.check(baseline, baseline, max_slowdown=0.0, min_increase_ms=0)


def test_a_configuration_beyond_the_ceiling_is_refused(tmp_path):
    raw = short_config()
    raw["scenarios"]["teams"]["users"] = 3
    path = tmp_path / "over.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigProblem, match="the ceiling is 2 users"):
        load(path, tasks_of)
    raw["scenarios"]["teams"].update(users=1, weights={"dance": 1})
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigProblem, match="no task"):
        load(path, tasks_of)
