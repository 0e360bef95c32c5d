"""Credits: the caller's balance and the ledger of every movement (RLS: own rows only)."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from backend.api import schemas
from backend.api.outcomes import documented_errors
from backend.auth.guard import require_user
from backend.db import rpc, user_transaction
from backend.errors import NotFound
from backend.http.access import access
from backend.http.pagination import NEWEST_FIRST, Page

blp = Blueprint(
    "credits",
    __name__,
    url_prefix="/api/v1/credits",
    description="The caller's credit balance and transactions.",
)

OWN_PROFILE = "select credits as balance, plan from public.profiles where id = (select auth.uid())"
LEDGER_COLUMNS = "id, kind::text, amount, balance_after, generation_id, refund_of, note, created_at"


@blp.route("/balance")
class Balance(MethodView):
    @require_user
    @access("account", "read")
    @blp.response(200, schemas.BalanceSchema)
    @documented_errors(blp, 401, 404)
    def get(self):
        """The caller's balance now, and lifetime totals as of the last analytics refresh."""
        with user_transaction() as cur:
            cur.execute(OWN_PROFILE)
            profile = cur.fetchone()
            totals = rpc(cur, "public.my_credit_summary")
        if profile is None:
            raise NotFound("profile not found")
        return {**profile, "totals": totals[0] if totals else None}


@blp.route("/transactions")
class Transactions(MethodView):
    @require_user
    @access("account", "read")
    @blp.arguments(schemas.TransactionListArgs, location="query")
    @blp.response(200, schemas.TransactionPageSchema)
    @documented_errors(blp, 400, 401, 422)
    def get(self, args):
        """Every credit movement of the caller, newest first; filter by kind."""
        page = Page.from_args(args, key=NEWEST_FIRST)
        kind = " and kind = %s::public.credit_kind" if "kind" in args else ""
        with user_transaction() as cur:
            cur.execute(
                f"select {LEDGER_COLUMNS} from public.credit_ledger"  # noqa: S608
                f" where {page.where_sql()}{kind} order by {page.order_sql()} limit %s",
                (*page.where_params(), *([args["kind"]] if kind else []), page.fetch_size),
            )
            return page.result(cur.fetchall())
