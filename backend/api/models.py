"""The model catalog: public, read as ``anon`` so the same policy serves Supabase clients,
and cached until the catalog changes."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from backend.api import schemas
from backend.api.outcomes import documented_errors
from backend.cache import cache
from backend.db import anon_transaction
from backend.http.access import access

# the catalog trigger announces every change to public.models under this tag
TAG = "models:catalog"

CATALOG = (
    "select id, name, kind::text, credit_cost, price_unit::text, parameter_schema"
    " from public.models"
    " where (%(kind)s::public.model_kind is null or kind = %(kind)s::public.model_kind)"
    " order by kind, credit_cost, id"
)

blp = Blueprint(
    "models",
    __name__,
    url_prefix="/api/v1/models",
    description="The FAL.ai models offered, their cost and parameters.",
)


@blp.route("")
class Models(MethodView):
    @blp.arguments(schemas.ModelListArgs, location="query")
    @access("public")
    @blp.response(200, schemas.ModelListSchema)
    @documented_errors(blp, 422)
    def get(self, args):
        """Enabled models with credit cost and parameter schema; no sign-in needed."""
        kind = args.get("kind")
        items, _ = cache().get_or_load(f"models:catalog:{kind}", lambda: (_catalog(kind), [TAG]))
        return {"items": items}


def _catalog(kind: str | None) -> list[dict]:
    with anon_transaction() as cur:
        cur.execute(CATALOG, {"kind": kind})
        return cur.fetchall()
