"""What each route touches and what it needs, declared beside the view.

    @blp.route("/<uuid:project_id>")
    class Project(MethodView):
        @require_user
        @access("project", "read")
        def get(self, project_id): ...

The declaration does not decide anything: Postgres does. It states the rule the route is
meant to follow, in the database's own vocabulary, so that the cross-tenant matrix can
compute every caller's expected answer from it and the role table, and so that a client
reading the OpenAPI document sees it (``x-velro-access`` on the operation). A route
without one fails the matrix.

``resource`` is what the route reads or writes:

- ``project``, ``generation``, ``team``: the one named in the path (or, for a create, the
  project in the body). ``requires`` is a permission of ``private.permissions_for``
  (read, write, share, delete) or a least role of ``public.team_role``; ``None`` means any
  signed-in caller may ask and the answer says what they may do.
- ``account``: the caller's own account and what their own lists show; ``requires`` is
  ``read`` (a suspended account may still read its own) or ``write``.
- ``invitation``: only the invited address may act.
- ``public``: anyone, token or not; ``credentials``: sign-in and sign-up routes, which take
  credentials in the body and no bearer token.
- ``operator``: the metrics token or an operator's token; ``fal``: a FAL-signed webhook.
"""

from __future__ import annotations

from flask import Flask
from flask_smorest import Blueprint

EXTENSION_KEY = "x-velro-access"
REGISTRY = "velro.access"
RESOURCES = (
    "project",
    "generation",
    "team",
    "account",
    "invitation",
    "public",
    "credentials",
    "operator",
    "fal",
)


def access(resource: str, requires: str | None = None):
    """Declare what the view touches and the permission or least role it needs."""
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}: one of {', '.join(RESOURCES)}")
    declared = {"resource": resource, "requires": requires}

    def decorator(view):
        view.velro_access = declared
        return Blueprint.doc(**{EXTENSION_KEY: declared})(view)

    return decorator


def declare(app: Flask, endpoint: str, resource: str, requires: str | None = None) -> None:
    """The same for a view we do not write (e.g. the OpenAPI document's own route)."""
    access(resource, requires)  # checks the name
    app.extensions.setdefault(REGISTRY, {})[endpoint] = {"resource": resource, "requires": requires}


def access_of(app: Flask, endpoint: str, method: str) -> dict | None:
    """The declaration of one route and method, or None when it has none."""
    declared = app.extensions.get(REGISTRY, {}).get(endpoint)
    if declared is not None:
        return declared
    view = app.view_functions[endpoint]
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        view = getattr(view_class, method.lower(), None)
    return getattr(view, "velro_access", None)
