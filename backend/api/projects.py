"""Projects: a user's folders of generations, optionally linked to teams or public.

Every query runs as the caller (``user_transaction``), so RLS decides what exists for
them. A project they cannot read is a 404 whether or not it exists; one they can read but
not change is a 403.
"""

from __future__ import annotations

from uuid import UUID

from flask.views import MethodView
from flask_smorest import Blueprint
from psycopg import sql

from backend.api import schemas
from backend.api.outcomes import denied_or_missing, documented_errors
from backend.auth.guard import require_user
from backend.db import rpc, user_transaction
from backend.errors import NotFound
from backend.http.access import access
from backend.http.pagination import NEWEST_FIRST, Page

blp = Blueprint(
    "projects",
    __name__,
    url_prefix="/api/v1/projects",
    description="Projects and their team links.",
)

COLUMNS = "id, owner_id, name, description, visibility, created_at, updated_at"
EXISTS = "select 1 from public.projects where id = %s"


@blp.route("")
class Projects(MethodView):
    @require_user
    @access("account", "read")
    @blp.arguments(schemas.PageArgs, location="query")
    @blp.response(200, schemas.ProjectPageSchema)
    @documented_errors(blp, 400, 401)
    def get(self, args):
        """Projects the caller can read, newest first."""
        page = Page.from_args(args, key=NEWEST_FIRST)
        with user_transaction() as cur:
            cur.execute(
                f"select {COLUMNS} from public.projects where {page.where_sql()}"  # noqa: S608
                f" order by {page.order_sql()} limit %s",
                (*page.where_params(), page.fetch_size),
            )
            return page.result(cur.fetchall())

    @require_user
    @access("account", "write")
    @blp.arguments(schemas.ProjectCreateSchema)
    @blp.response(201, schemas.ProjectSchema)
    @documented_errors(blp, 401, 403, 422)
    def post(self, body):
        """Create a project owned by the caller."""
        columns = list(body)
        statement = sql.SQL("insert into public.projects ({}) values ({}) returning {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            sql.SQL(COLUMNS),
        )
        with user_transaction() as cur:
            cur.execute(statement, tuple(body.values()))
            return cur.fetchone()


@blp.route("/<uuid:project_id>")
class Project(MethodView):
    @require_user
    @access("project", "read")
    @blp.response(200, schemas.ProjectDetailSchema)
    @documented_errors(blp, 401, 404)
    def get(self, project_id: UUID):
        """One project, the caller's access to it, and its team links."""
        with user_transaction() as cur:
            cur.execute(f"select {COLUMNS} from public.projects where id = %s", (project_id,))  # noqa: S608
            project = cur.fetchone()
            if project is None:
                raise NotFound("project not found")
            project["access"] = rpc(cur, "public.authorize_project", p_project_id=project_id)[0][
                "authorize_project"
            ]
            cur.execute(
                "select project_id, team_id, access_level, created_at from public.project_teams"
                " where project_id = %s order by created_at, team_id",
                (project_id,),
            )
            project["teams"] = cur.fetchall()
            return project

    @require_user
    @access("project", "owner")
    @blp.arguments(schemas.ProjectUpdateSchema)
    @blp.response(200, schemas.ProjectSchema)
    @documented_errors(blp, 401, 403, 404, 422)
    def patch(self, body, project_id: UUID):
        """Rename, describe or change the visibility of a project (its owner only)."""
        statement = sql.SQL("update public.projects set {} where id = %s returning {}").format(
            sql.SQL(", ").join(
                sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder())
                for column in body
            ),
            sql.SQL(COLUMNS),
        )
        with user_transaction() as cur:
            cur.execute(statement, (*body.values(), project_id))
            project = cur.fetchone()
            if project is None:
                denied_or_missing(cur, EXISTS, project_id, "project")
            return project

    @require_user
    @access("project", "owner")
    @blp.response(204)
    @documented_errors(blp, 401, 403, 404, 409)
    def delete(self, project_id: UUID):
        """Delete a project and its generations (its owner only).

        Refused (409) while a charged generation in it is pending, queued or processing.
        """
        with user_transaction() as cur:
            cur.execute("delete from public.projects where id = %s returning id", (project_id,))
            if cur.fetchone() is None:
                denied_or_missing(cur, EXISTS, project_id, "project")


@blp.route("/<uuid:project_id>/teams/<uuid:team_id>")
class ProjectTeam(MethodView):
    @require_user
    @access("project", "owner")
    @blp.arguments(schemas.ProjectTeamLinkSchema)
    @blp.response(200, schemas.ProjectTeamSchema)
    @documented_errors(blp, 401, 403, 404, 422)
    def put(self, body, project_id: UUID, team_id: UUID):
        """Link the project to a team at an access level (its owner, an editor or more there).

        Linking a private project makes it team-visible. Linking again changes the level.
        """
        with user_transaction() as cur:
            return rpc(
                cur,
                "public.link_project_team",
                p_project_id=project_id,
                p_team_id=team_id,
                p_access_level=body["access_level"],
            )[0]

    @require_user
    @access("team", "admin")
    @blp.response(204)
    @documented_errors(blp, 401, 403, 404)
    def delete(self, project_id: UUID, team_id: UUID):
        """Remove a team link (the project's owner, or the team's owner or admins).

        The team's access ends at once (media URLs already given out work until they
        expire, ``MEDIA_URL_SECONDS``).
        """
        with user_transaction() as cur:
            rpc(cur, "public.unlink_project_team", p_project_id=project_id, p_team_id=team_id)


@blp.route("/<uuid:project_id>/stats")
class ProjectStats(MethodView):
    @require_user
    @access("project", "read")
    @blp.arguments(schemas.UsageArgs, location="query")
    @blp.response(200, schemas.UsageSchema)
    @documented_errors(blp, 401, 403, 404, 422)
    def get(self, args, project_id: UUID):
        """Daily usage of the project (anyone who can read it), as of the last refresh."""
        with user_transaction() as cur:
            usage = rpc(cur, "public.project_usage", p_project_id=project_id, p_days=args["days"])
            return {"days": args["days"], "usage": usage}
