"""The REST resources under /api/v1: one blueprint per resource.

The app factory calls ``register(api)`` with its flask-smorest ``Api``, before the first
request.

How every resource answers (Postgres decides; these modules only translate):

- 401 ``invalid_token``: no token, or one that is malformed, expired, forged or logged out.
- 404 ``not_found``: the caller cannot read it. Unknown and unreadable look the same, and a
  malformed id in the path (``/projects/not-a-uuid``) is a 404 too, as nothing by that
  name can exist; the route's uuid converter refuses it before any SQL runs.
- 403 ``forbidden``: the caller can read it but their role does not allow the action, or
  their account is suspended.
- 402 ``insufficient_credits``; 409 ``conflict`` (e.g. demoting the owner); 410 ``gone``
  (a used or expired invitation).
- 422 ``validation_failed``: a body field is missing, unknown or malformed, or a query or
  header field is missing or malformed (a query parameter a route does not take is
  ignored); ``details`` names each field. 400: a value the database refuses (e.g. a parameter the
  model does not take, named in the message) or a ``bad_cursor``. Nothing is written.
- Lists answer ``{"items": [...], "next_cursor": ...}``: pass ``next_cursor`` back as
  ``?cursor=`` for the next page (``limit`` 1..100, default 20); null on the last page.

Here: one module per resource (its blueprint and views), ``schemas`` (the request and
response schemas beside them), ``outcomes`` (the documented error answers) and ``refusals``
(403 and 404 on a resource counted in the audit's denials). May import:
config, db, cache, http, ``auth.guard`` and ``auth.mailer``; nothing imports it but
``backend.app``.
"""

from __future__ import annotations

from flask_smorest import Api

from backend.api import credits, fal_webhooks, generations, models, projects, teams

BLUEPRINTS = (
    projects.blp,
    generations.blp,
    teams.blp,
    teams.invitations,
    credits.blp,
    models.blp,
    fal_webhooks.blp,
)


def register(api: Api) -> None:
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
