-- Putting a generation into a team belongs to its owners; a team link or a share manages
-- content only.
--
-- Sharing a generation (or changing a share's role) needed admin on it, and admin is what a
-- team link or a share at admin gives. A link admin could share every generation of the
-- project into a team of their own at admin and keep admin there after being removed from
-- the linked team: re-share it, delete the owner's work. This is the hole that
-- 20261201165315_project_shape_belongs_to_owner closed for projects by making linking
-- owner-only; the same rule now holds for generations: sharing needs the owner role, which
-- only the generation's creator (direct_ownership) and its project's owner (project_owner)
-- hold (a link's level and a share's role are never owner), and at least editor in the team.
--
-- private.permissions_for('admin') no longer lists share, so the authorization answers say
-- what the RPCs do (owner: read, write, share, delete; admin: read, write, delete).
-- public.team_permissions, which describes what a team role allows on work put into the
-- team, no longer lists share for any role: such work is held at admin at most.
--
-- Taking a share out is unchanged: admin on the generation, or the team's owner or admins.
-- It only ends access and cannot grant any, so it leaves nothing behind after a removal.

create or replace function private.permissions_for(p_role public.team_role)
returns text[]
language plpgsql
immutable
set search_path = ''
as $$
begin
    return case
        when p_role = 'owner' then array['read', 'write', 'share', 'delete']
        when p_role = 'admin' then array['read', 'write', 'delete']
        when p_role = 'editor' then array['read', 'write']
        when p_role = 'viewer' then array['read']
        else array[]::text[]
    end;
end;
$$;

comment on function private.permissions_for(public.team_role) is
'owner: read, write, share, delete; admin: read, write, delete; editor: read, write; viewer: read.';

create or replace function public.share_generation(
    p_generation_id uuid, p_team_id uuid, p_role public.team_role default 'viewer'
)
returns public.generation_shares
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_share public.generation_shares;
begin
    perform 1 from public.generations where id = p_generation_id for key share;
    perform 1 from public.teams where id = p_team_id for key share;
    perform private.require_generation_role(p_generation_id, 'owner');
    perform private.require_team_role(p_team_id, 'editor');
    if p_role is null or p_role = 'owner' then
        perform private.raise_error(400, 'role must be viewer, editor or admin');
    end if;

    insert into public.generation_shares (generation_id, team_id, role, shared_by)
    values (p_generation_id, p_team_id, p_role, v_uid)
    on conflict (generation_id, team_id) do update set role = excluded.role
    returning * into v_share;

    perform private.audit('generation.shared', v_uid, 'generation', p_generation_id::text, p_team_id,
        jsonb_build_object('role', p_role));
    return v_share;
end;
$$;

comment on function public.share_generation(uuid, uuid, public.team_role) is
'The generation''s creator or its project''s owner shares it with a team where they are at '
'least editor, at a role below owner.';

comment on function public.unshare_generation(uuid, uuid) is
'Admins of the generation, or the team''s owner or admins, end a share; access ends at once.';

create or replace function public.team_permissions(p_team_id uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
    v_role public.team_role;
begin
    perform private.require_active_user();
    v_role := private.require_team_role(p_team_id, 'viewer');
    return jsonb_build_object(
        'team_id', p_team_id,
        'role', v_role,
        'permissions', to_jsonb(
            array_remove(private.permissions_for(v_role), 'share')
            || case when v_role >= 'admin' then array['invite', 'manage_members'] else array[]::text[] end
            || case when v_role = 'owner' then array['transfer_ownership'] else array[]::text[] end
        )
    );
end;
$$;
