"""`python -m bench.load.swarm`: one scenario, headless, in a process of its own.

The parent (``python -m bench.load``) starts this with the scenario's settings as JSON and
reads the figures it writes. Importing locust patches the standard library with gevent,
which is why nothing else of the run happens in this process. The run stops itself after
its seconds; the parent kills it if it does not.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import gevent
from locust import between
from locust.env import Environment

from bench.load.results import Recorder
from bench.load.users import SCENARIOS


def user_class(name: str, spec: dict, timeout: float):
    """The scenario's class with the YAML's task weights, think time and timeouts."""
    base = SCENARIOS[name]
    return type(
        f"{base.__name__}Load",
        (base,),
        {
            "tasks": {getattr(base, task): weight for task, weight in spec["weights"].items()},
            "first_round": tuple(spec["weights"]),
            "wait_time": between(*spec["wait"]),
            "network_timeout": timeout,
            "connection_timeout": timeout,
        },
    )


def run(name: str, spec: dict, host: str, timeout: float) -> dict:
    environment = Environment(user_classes=[user_class(name, spec, timeout)], host=host)
    recorder = Recorder()
    recorder.attach(environment.events)
    runner = environment.create_local_runner()
    started = time.monotonic()
    runner.start(spec["users"], spawn_rate=spec["spawn_rate"])
    gevent.sleep(spec["seconds"])
    runner.quit()  # stops every user, in-flight requests included
    return {"config": spec, **recorder.summary(time.monotonic() - started)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    parser.add_argument("--spec", required=True, help="users, spawn_rate, seconds, wait, weights")
    parser.add_argument("--host", required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    figures = run(args.scenario, json.loads(args.spec), args.host, args.timeout)
    args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
