"""The simulated FAL's public face, served by the app in local work only: its JWKS and
the output files its webhooks point at. ``simulator_for(settings)`` builds the provider
both the web process and the worker use."""

from __future__ import annotations

from pathlib import Path

import psycopg
from flask import Blueprint, abort, current_app, jsonify, send_file

from backend.config import Settings
from backend.fal.simulated import SimulatedFal, SimulatedQueue
from backend.http.access import access

blp = Blueprint("simulated_fal", __name__, url_prefix="/simulated-fal")


def uses_simulator(settings: Settings) -> bool:
    """No FAL key, and started for local work (production refuses to start without a key)."""
    return not settings.FAL_KEY and settings.is_local


def simulator_for(settings: Settings) -> SimulatedFal:
    def kind_of(model_id: str) -> str:
        with psycopg.connect(settings.direct_database_url) as conn:
            row = conn.execute(
                "select kind from public.models where id = %s", (model_id,)
            ).fetchone()
        return row[0] if row else "image"

    return SimulatedFal(Path(settings.MEDIA_DIR) / "simulated-fal", settings.PUBLIC_URL, kind_of)


def simulated_queue(settings: Settings) -> SimulatedQueue:
    """What the worker submits to when ``uses_simulator(settings)``."""
    return SimulatedQueue(simulator_for(settings))


def jwks_url(settings: Settings) -> str:
    """Where the webhook verifier finds the simulator's key (in place of FAL's JWKS)."""
    return f"{settings.PUBLIC_URL.rstrip('/')}/simulated-fal/.well-known/jwks.json"


@blp.get("/.well-known/jwks.json")
@access("public")
def jwks():
    return jsonify(simulator_for(current_app.config["SETTINGS"]).jwks())


@blp.get("/files/<request_id>/<name>")
@access("public")
def output_file(request_id: str, name: str):
    path = simulator_for(current_app.config["SETTINGS"]).file_path(request_id, name)
    if path is None:
        abort(404)
    return send_file(path.resolve(), max_age=0)
