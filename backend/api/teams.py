"""Teams, their members and invitations.

Reads go through RLS (members read their teams, teammates and usage); every change goes
through the team RPCs, which hold the rules: only admins invite and manage members, the
single owner can be neither removed nor demoted, invitations are one-time and bound to
an email.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from flask.views import MethodView
from flask_smorest import Blueprint

from backend.api import schemas
from backend.api.outcomes import documented_errors
from backend.api.pagination import NEWEST_FIRST, Page
from backend.auth import current_user, require_user
from backend.db import rpc, user_transaction
from backend.errors import NotFound

blp = Blueprint(
    "teams", __name__, url_prefix="/api/v1/teams", description="Teams, members and invitations."
)
invitations = Blueprint(
    "invitations",
    __name__,
    url_prefix="/api/v1/invitations",
    description="Accepting team invitations.",
)

# the caller's teams with their own role in each; RLS limits teams to those they belong to
MY_TEAMS = """
    with mine as (
        select t.id, t.name, t.owner_id, m.role, t.created_at, t.updated_at
        from public.teams as t
        inner join public.team_members as m on m.team_id = t.id and m.user_id = (select auth.uid())
    )
    select * from mine
"""

ONE_TEAM = """
    select t.id, t.name, t.owner_id, m.role, t.created_at, t.updated_at,
        (select count(*) from public.team_members as c where c.team_id = t.id)::integer
            as member_count
    from public.teams as t
    inner join public.team_members as m on m.team_id = t.id and m.user_id = (select auth.uid())
    where t.id = %s
"""

MEMBERS = """
    select m.user_id, m.role, p.email, p.display_name, m.created_at as joined_at
    from public.team_members as m
    left join public.profiles as p on p.id = m.user_id
    where m.team_id = %s
    order by m.role desc, m.created_at, m.user_id
"""


@blp.route("")
class Teams(MethodView):
    @require_user
    @blp.arguments(schemas.PageArgs, location="query")
    @blp.response(200, schemas.TeamPageSchema)
    @documented_errors(blp, 400, 401, 422)
    def get(self, args):
        """The caller's teams with their role in each, newest first."""
        page = Page.from_args(args, key=NEWEST_FIRST)
        with user_transaction() as cur:
            cur.execute(
                f"{MY_TEAMS} where {page.where_sql()} order by {page.order_sql()} limit %s",
                (*page.where_params(), page.fetch_size),
            )
            return page.result(cur.fetchall())

    @require_user
    @blp.arguments(schemas.TeamCreateSchema)
    @blp.response(201, schemas.TeamSchema)
    @documented_errors(blp, 401, 403, 422)
    def post(self, body):
        """Create a team; the caller becomes its owner."""
        with user_transaction() as cur:
            team = rpc(cur, "public.create_team", p_name=body["name"])[0]
        return {**team, "role": "owner"}


@blp.route("/<uuid:team_id>")
class Team(MethodView):
    @require_user
    @blp.response(200, schemas.TeamDetailSchema)
    @documented_errors(blp, 401, 404)
    def get(self, team_id: UUID):
        """One of the caller's teams."""
        with user_transaction() as cur:
            cur.execute(ONE_TEAM, (team_id,))
            team = cur.fetchone()
        if team is None:
            raise NotFound("team not found")
        return team


@blp.route("/<uuid:team_id>/members")
class Members(MethodView):
    @require_user
    @blp.response(200, schemas.MemberListSchema)
    @documented_errors(blp, 401, 404)
    def get(self, team_id: UUID):
        """The members of one of the caller's teams, highest role first."""
        with user_transaction() as cur:
            cur.execute("select 1 from public.teams where id = %s", (team_id,))
            if cur.fetchone() is None:
                raise NotFound("team not found")
            cur.execute(MEMBERS, (team_id,))
            return {"items": cur.fetchall()}


@blp.route("/<uuid:team_id>/permissions")
class Permissions(MethodView):
    @require_user
    @blp.response(200, schemas.TeamPermissionsSchema)
    @documented_errors(blp, 401, 404)
    def get(self, team_id: UUID):
        """The caller's role in the team and what it allows."""
        with user_transaction() as cur:
            return rpc(cur, "public.team_permissions", p_team_id=team_id)[0]["team_permissions"]


@blp.route("/<uuid:team_id>/stats")
class Stats(MethodView):
    @require_user
    @blp.arguments(schemas.UsageArgs, location="query")
    @blp.response(200, schemas.UsageSchema)
    @documented_errors(blp, 401, 403, 404, 422)
    def get(self, args, team_id: UUID):
        """Daily usage of the projects linked to the team (members), as of the last refresh."""
        with user_transaction() as cur:
            usage = rpc(cur, "public.team_usage", p_team_id=team_id, p_days=args["days"])
        return {"days": args["days"], "usage": usage}


@blp.route("/<uuid:team_id>/invite")
class Invite(MethodView):
    @require_user
    @blp.arguments(schemas.InviteSchema)
    @blp.response(201, schemas.InvitationSchema)
    @documented_errors(blp, 401, 403, 404, 409, 422)
    def post(self, body, team_id: UUID):
        """Invite an email at a role below owner (admins); the token is shown only here."""
        with user_transaction() as cur:
            rows = rpc(
                cur,
                "public.invite_member",
                p_team_id=team_id,
                p_email=body["email"],
                p_role=body["role"],
            )
        invitation = rows[0]["invite_member"]
        # the RPC answers jsonb, where a timestamp is text
        invitation["expires_at"] = datetime.fromisoformat(invitation["expires_at"])
        return invitation


@blp.route("/<uuid:team_id>/members/<uuid:user_id>")
class Member(MethodView):
    @require_user
    @blp.arguments(schemas.MemberRoleSchema)
    @blp.response(200, schemas.MembershipSchema)
    @documented_errors(blp, 401, 403, 404, 409, 422)
    def patch(self, body, team_id: UUID, user_id: UUID):
        """Change a member's role (admins; making someone owner transfers ownership)."""
        with user_transaction() as cur:
            return rpc(
                cur,
                "public.change_member_role",
                p_team_id=team_id,
                p_user_id=user_id,
                p_role=body["role"],
            )[0]

    @require_user
    @blp.response(204)
    @documented_errors(blp, 401, 403, 404, 409)
    def delete(self, team_id: UUID, user_id: UUID):
        """Remove a member (admins), or leave the team when the member is the caller."""
        with user_transaction() as cur:
            if user_id == current_user().user_id:
                rpc(cur, "public.leave_team", p_team_id=team_id)
            else:
                rpc(cur, "public.remove_member", p_team_id=team_id, p_user_id=user_id)


@invitations.route("/<string(maxlength=256):token>/accept")
class Accept(MethodView):
    @require_user
    @invitations.response(200, schemas.MembershipSchema)
    @documented_errors(invitations, 401, 403, 404, 409, 410)
    def post(self, token: str):
        """Join the team of an invitation sent to the caller's email (once, before it expires)."""
        with user_transaction() as cur:
            return rpc(cur, "public.accept_invitation", p_token=token)[0]
