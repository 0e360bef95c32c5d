"""The scenarios' names and their tasks' names, which the YAML's weights refer to.

Kept apart from bench/load/users.py, which imports locust (and with it gevent's patching
of the standard library), so the parent process can check a configuration without it.
"""

from __future__ import annotations

TASKS: dict[str, tuple[str, ...]] = {
    "signup_login": ("signup", "login", "wrong_password", "me", "refresh", "logout"),
    "authorization": ("own", "shared", "denied", "read_shared", "read_denied"),
    "generation": ("submit", "replay", "bad_parameter", "status", "list", "balance"),
    "teams": (
        "members",
        "permissions",
        "editor_write",
        "viewer_read",
        "viewer_write_refused",
        "viewer_invite_refused",
        "invite_and_revoke",
    ),
    "journey": ("journey",),
}


def tasks_of(name: str) -> tuple[str, ...] | None:
    return TASKS.get(name)
