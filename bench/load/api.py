"""One request of a scenario, and how its outcome counts.

Every request names the statuses that answer it as planned (``ok``) and the 4xx the
scenario expects (``expected``: a viewer's refused write, a wrong password). Anything else
is an unexpected error: a 5xx, another 4xx, a timeout or a broken connection, or an answer
whose body says something other than the rule (``check``). A step that later steps depend
on stops the task when it did not go as planned (``Skip``): its failure is already counted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from locust.exception import RescheduleTask

API = "/api/v1"
PASSWORD = "load-scenario-password"  # noqa: S105 (accounts of a throwaway database)


class Skip(RescheduleTask):
    """The task cannot go on: an earlier step did not answer as planned."""


class WrongAnswer(Exception):
    """A planned status whose body breaks the rule the scenario checks."""


def call(
    user,
    method: str,
    path: str,
    *,
    name: str,
    token: str | None = None,
    body: dict | None = None,
    ok: tuple[int, ...] = (200,),
    expected: tuple[int, ...] = (),
    check: Callable[[dict], bool] | None = None,
    headers: dict | None = None,
) -> tuple[int, dict | None]:
    """Send one request through the user's client; (status, JSON body or None)."""
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    with user.client.request(
        method, API + path, name=name, json=body, headers=sent, catch_response=True
    ) as response:
        status = response.status_code or 0
        answer = _json(response.content)
        if status in ok:
            if check is not None and not check(answer or {}):
                response.failure(WrongAnswer(f"{status} with {answer}"))
            else:
                response.success()
        elif status in expected:
            response.success()
        elif status:
            response.failure(f"unexpected {status}: {answer}")
        # status 0 (no answer): the response carries its own error (timeout, connection)
    return status, answer


def must(user, method: str, path: str, **kwargs) -> dict:
    """``call`` for a step the task needs: its planned answer's body, else ``Skip``."""
    ok = kwargs.get("ok", (200,))
    status, answer = call(user, method, path, **kwargs)
    if status not in ok or (answer is None and status != 204):
        raise Skip()
    return answer or {}


def _json(content: bytes | None) -> dict | None:
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return None


def new_email(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}@load.velro.test"


def sign_up(user, label: str) -> dict:
    """A new confirmed account (sign-ups are confirmed at once here): id, email, token."""
    email = new_email(label)
    session = must(
        user,
        "POST",
        "/auth/signup",
        name="POST /auth/signup",
        body={"email": email, "password": PASSWORD},
        ok=(201,),
    )
    return {"id": session["user"]["id"], "email": email, "token": session["access_token"]}
