"""Teams, their members and invitations.

Reads of teams go through RLS (members read their teams and usage); the member list and
the pending invitations come from RPCs that return only what a teammate may see (id,
role, email, display name: never a profile's credits, plan or status). Every change goes
through the team RPCs, which hold the rules: admins invite and manage editors and
viewers, only the owner makes admins and hands on ownership, the single owner can be
neither removed nor demoted, invitations are one-time, revocable, and bound to a
confirmed email. An invitation is emailed to the invitee; its token travels in request
bodies only (never in a URL, so access logs never hold it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from backend.api import schemas
from backend.api.outcomes import documented_errors
from backend.auth.guard import current_user, require_user
from backend.auth.mailer import mailer
from backend.db import rpc, user_transaction
from backend.errors import NotFound
from backend.http.access import access
from backend.http.pagination import NEWEST_FIRST, BadCursor, Key, Page

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

# highest role first, then newest; the role travels in the cursor as its rank
MEMBER_ORDER: Key = (("role_rank", int), ("joined_at", datetime), ("user_id", UUID))
ROLE_RANKS = schemas.TEAM_ROLES  # lowest to highest, as the team_role enum orders them


@blp.route("")
class Teams(MethodView):
    @require_user
    @access("account", "read")
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
    @access("account", "write")
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
    @access("team", "read")
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
    @access("team", "read")
    @blp.arguments(schemas.PageArgs, location="query")
    @blp.response(200, schemas.MemberPageSchema)
    @documented_errors(blp, 400, 401, 403, 404, 422)
    def get(self, args, team_id: UUID):
        """A page of the team's members (id, role, email, display name), highest role first."""
        page = Page.from_args(args, key=MEMBER_ORDER)
        role, joined_at, user_id = _member_cursor(page)
        with user_transaction() as cur:
            rows = rpc(
                cur,
                "public.list_team_members",
                p_team_id=team_id,
                p_limit=page.fetch_size,
                p_after_role=role,
                p_after_joined_at=joined_at,
                p_after_user_id=user_id,
            )
        for row in rows:
            row["role_rank"] = ROLE_RANKS.index(row["role"])
        return page.result(rows)


def _member_cursor(page: Page) -> tuple:
    if page.after is None:
        return None, None, None
    rank, joined_at, user_id = page.after
    if not 0 <= rank < len(ROLE_RANKS):
        raise BadCursor()
    return ROLE_RANKS[rank], joined_at, user_id


@blp.route("/<uuid:team_id>/permissions")
class Permissions(MethodView):
    @require_user
    @access("team", "read")
    @blp.response(200, schemas.TeamPermissionsSchema)
    @documented_errors(blp, 401, 403, 404)
    def get(self, team_id: UUID):
        """The caller's role in the team and what it allows (403 for a suspended account)."""
        with user_transaction() as cur:
            return rpc(cur, "public.team_permissions", p_team_id=team_id)[0]["team_permissions"]


@blp.route("/<uuid:team_id>/stats")
class Stats(MethodView):
    @require_user
    @access("team", "read")
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
    @access("team", "admin")
    @blp.arguments(schemas.InviteSchema)
    @blp.response(201, schemas.InvitationSchema)
    @documented_errors(blp, 401, 403, 404, 409, 422)
    def post(self, body, team_id: UUID):
        """Invite an email (admins: viewer or editor; the owner: admin too) and mail the token.

        The token is also in this answer, once; only its hash is kept. The email goes out
        before the invitation commits, so an invitation exists only if its email left.
        """
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
            _mail_invitation(cur, invitation)
        return invitation


def _mail_invitation(cur, invitation: dict) -> None:
    cur.execute(
        "select t.name, p.display_name, p.email from public.teams as t"
        " cross join public.profiles as p where t.id = %s and p.id = (select auth.uid())",
        (invitation["team_id"],),
    )
    found = cur.fetchone()
    inviter = found["display_name"] or found["email"]
    expires = invitation["expires_at"].astimezone(UTC)
    public_url = current_app.config["SETTINGS"].PUBLIC_URL
    accept = f"{public_url.rstrip('/')}/api/v1/invitations/accept"
    text = (
        f'{inviter} invites you to join the team "{found["name"]}" on Velro'
        f" as {invitation['role']}.\n\n"
        f"Your invitation token:\n\n    {invitation['token']}\n\n"
        f"Sign in as {invitation['email']} (with a confirmed email address) and send it:\n\n"
        f"    POST {accept}\n"
        f'    {{"token": "{invitation["token"]}"}}\n\n'
        f"It works once, until {expires:%Y-%m-%d %H:%M} UTC, unless the team revokes it.\n"
    )
    mailer().send(invitation["email"], f"Join {found['name']} on Velro", text)


@blp.route("/<uuid:team_id>/invitations")
class Invitations(MethodView):
    @require_user
    @access("team", "admin")
    @blp.arguments(schemas.PageArgs, location="query")
    @blp.response(200, schemas.PendingInvitationPageSchema)
    @documented_errors(blp, 400, 401, 403, 404, 422)
    def get(self, args, team_id: UUID):
        """A page of the team's pending invitations, newest first (admins)."""
        page = Page.from_args(args, key=NEWEST_FIRST)
        created_at, invitation_id = page.after or (None, None)
        with user_transaction() as cur:
            return page.result(
                rpc(
                    cur,
                    "public.list_pending_invitations",
                    p_team_id=team_id,
                    p_limit=page.fetch_size,
                    p_after_created_at=created_at,
                    p_after_id=invitation_id,
                )
            )


@blp.route("/<uuid:team_id>/invitations/<uuid:invitation_id>")
class PendingInvitation(MethodView):
    @require_user
    @access("team", "admin")
    @blp.response(204)
    @documented_errors(blp, 401, 403, 404, 409)
    def delete(self, team_id: UUID, invitation_id: UUID):
        """Revoke an invitation that is not yet accepted (admins); its token stops working."""
        with user_transaction() as cur:
            rpc(cur, "public.revoke_invitation", p_team_id=team_id, p_invitation_id=invitation_id)


@blp.route("/<uuid:team_id>/transfer")
class Transfer(MethodView):
    @require_user
    @access("team", "owner")
    @blp.arguments(schemas.TransferSchema)
    @blp.response(200, schemas.TeamSchema)
    @documented_errors(blp, 401, 403, 404, 409, 422)
    def post(self, body, team_id: UUID):
        """Hand the team to another active member (the owner); the caller stays as admin."""
        with user_transaction() as cur:
            team = rpc(
                cur, "public.transfer_team_ownership", p_team_id=team_id, p_user_id=body["user_id"]
            )[0]
        return {**team, "role": "admin"}


@blp.route("/<uuid:team_id>/members/<uuid:user_id>")
class Member(MethodView):
    @require_user
    @access("team", "admin")
    @blp.arguments(schemas.MemberRoleSchema)
    @blp.response(200, schemas.MembershipSchema)
    @documented_errors(blp, 401, 403, 404, 409, 422)
    def patch(self, body, team_id: UUID, user_id: UUID):
        """Set a member's role: admins move editors and viewers; only the owner makes admins."""
        with user_transaction() as cur:
            return rpc(
                cur,
                "public.change_member_role",
                p_team_id=team_id,
                p_user_id=user_id,
                p_role=body["role"],
            )[0]

    @require_user
    @access("team", "admin")
    @blp.response(204)
    @documented_errors(blp, 401, 403, 404, 409)
    def delete(self, team_id: UUID, user_id: UUID):
        """Remove a member (admins), or leave the team when the member is the caller."""
        with user_transaction() as cur:
            if user_id == current_user().user_id:
                rpc(cur, "public.leave_team", p_team_id=team_id)
            else:
                rpc(cur, "public.remove_member", p_team_id=team_id, p_user_id=user_id)


@invitations.route("/accept")
class Accept(MethodView):
    @require_user
    @access("invitation")
    @invitations.arguments(schemas.AcceptInvitationSchema)
    @invitations.response(200, schemas.MembershipSchema)
    @documented_errors(invitations, 401, 403, 404, 409, 410, 422)
    def post(self, body):
        """Join the team of an invitation sent to the caller's confirmed email (once).

        The token is in the body, never in the URL, so no access log holds it.
        """
        with user_transaction() as cur:
            return rpc(cur, "public.accept_invitation", p_token=body["token"])[0]
