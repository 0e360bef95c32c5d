"""The load configuration (YAML): the app's settings, a global ceiling and the scenarios.

    ceiling: {users: 200, seconds: 120}      # no scenario may ask for more
    request_timeout_seconds: 10              # a slower answer counts as a timeout
    app: {workers: 2, threads: 4, env: {BCRYPT_COST: "10"}}
    compare: {max_p95_slowdown: 1.0, min_p95_increase_ms: 10}
    scenarios:
      authorization:
        users: 20
        spawn_rate: 10                       # users started per second
        seconds: 30
        wait: [0, 0]                         # think time between tasks, min and max seconds
        weights: {own: 3, shared: 3, denied: 2}

A scenario's weights name its tasks (bench/load/users.py); a task left out does not run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_CONFIG = Path(__file__).resolve().parent / "scenarios.yaml"


class ConfigProblem(ValueError):
    """The YAML does not describe a run; the message says what to change."""


@dataclass(frozen=True)
class Scenario:
    name: str
    users: int
    spawn_rate: float
    seconds: float
    wait: tuple[float, float]
    weights: dict[str, int]

    def as_dict(self) -> dict:
        return {
            "users": self.users,
            "spawn_rate": self.spawn_rate,
            "seconds": self.seconds,
            "wait": list(self.wait),
            "weights": dict(self.weights),
        }


@dataclass(frozen=True)
class Config:
    scenarios: dict[str, Scenario]
    ceiling_users: int
    ceiling_seconds: float
    request_timeout: float
    workers: int = 2
    threads: int = 4
    app_env: dict[str, str] = field(default_factory=dict)
    max_p95_slowdown: float = 1.0
    min_p95_increase_ms: float = 10.0


def load(path: Path, tasks_of) -> Config:
    """Read and check ``path``; ``tasks_of(name)`` gives a scenario's task names (or None)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigProblem(f"cannot read {path}: {error}") from error
    ceiling = _mapping(raw, "ceiling")
    app = _mapping(raw, "app")
    compare = _mapping(raw, "compare")
    users_cap = _positive(ceiling, "users", "ceiling", int)
    seconds_cap = _positive(ceiling, "seconds", "ceiling", float)
    scenarios = {}
    for name, body in _mapping(raw, "scenarios").items():
        scenarios[name] = _scenario(name, body or {}, tasks_of)
        if scenarios[name].users > users_cap or scenarios[name].seconds > seconds_cap:
            raise ConfigProblem(
                f"scenario {name!r} asks for {scenarios[name].users} users for "
                f"{scenarios[name].seconds:g} s: the ceiling is {users_cap} users and "
                f"{seconds_cap:g} s (raise `ceiling` deliberately, or ask for less)"
            )
    if not scenarios:
        raise ConfigProblem(f"{path} names no scenarios")
    return Config(
        scenarios=scenarios,
        ceiling_users=users_cap,
        ceiling_seconds=seconds_cap,
        request_timeout=float(raw.get("request_timeout_seconds", 10)),
        workers=int(app.get("workers", 2)),
        threads=int(app.get("threads", 4)),
        app_env={str(key): str(value) for key, value in (app.get("env") or {}).items()},
        max_p95_slowdown=float(compare.get("max_p95_slowdown", 1.0)),
        min_p95_increase_ms=float(compare.get("min_p95_increase_ms", 10.0)),
    )


def _scenario(name: str, body: dict, tasks_of) -> Scenario:
    known = tasks_of(name)
    if known is None:
        raise ConfigProblem(f"no scenario is called {name!r}")
    weights = {str(task): int(weight) for task, weight in (body.get("weights") or {}).items()}
    unknown = sorted(set(weights) - set(known))
    if unknown:
        raise ConfigProblem(
            f"scenario {name!r} has no task(s) {unknown}; its tasks are {sorted(known)}"
        )
    if not weights or min(weights.values()) < 1:
        raise ConfigProblem(f"scenario {name!r} needs weights: positive integers per task")
    wait = body.get("wait", [0, 0])
    if len(wait) != 2 or not 0 <= float(wait[0]) <= float(wait[1]):
        raise ConfigProblem(f"scenario {name!r}: wait is [min, max] seconds, 0 <= min <= max")
    return Scenario(
        name=name,
        users=_positive(body, "users", name, int),
        spawn_rate=_positive(body, "spawn_rate", name, float),
        seconds=_positive(body, "seconds", name, float),
        wait=(float(wait[0]), float(wait[1])),
        weights=weights,
    )


def _mapping(raw: dict, key: str) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigProblem(f"`{key}` must be a mapping")
    return value


def _positive(body: dict, key: str, where: str, kind):
    try:
        value = kind(body[key])
    except (KeyError, TypeError, ValueError):
        raise ConfigProblem(f"{where}: `{key}` is required, a positive number") from None
    if value <= 0:
        raise ConfigProblem(f"{where}: `{key}` must be positive, not {value}")
    return value
