-- Team history in the audit log: every team's creation and every membership change.
--
-- Triggers write it, so every path is covered: the RPCs, the demo seed, an operator's SQL,
-- and cascades (deleting a team or an account removes its memberships, and says so). The
-- RPCs' own events (team.role_changed, team.member_removed, team.ownership_transferred...)
-- still say who asked for what; these say what the membership table became, so the
-- integrity audit can compare the table with its history. The actor is the signed-in
-- caller, or null for the seed and operators.

-- indexes -------------------------------------------------------------------------------

-- the integrity audit reads each membership's latest event
create index audit_events_membership_idx on private.audit_events (team_id, subject_id, id desc)
where subject_type = 'team_member';

create index audit_events_team_subject_idx on private.audit_events (subject_id)
where subject_type = 'team';

-- functions -----------------------------------------------------------------------------

create function private.audit_team_created()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    perform private.audit(
        'team.created', (select auth.uid()), 'team', new.id::text, new.id,
        jsonb_build_object('owner_id', new.owner_id)
    );
    return null;
end;
$$;

comment on function private.audit_team_created() is
'Audits every team''s creation, whatever wrote it (create_team, the seed, an operator).';

revoke all on function private.audit_team_created() from public, anon, authenticated, service_role;

-- details.role is always the role the membership has after the event (none after a removal)
create function private.audit_membership_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    if tg_op in ('UPDATE', 'DELETE') and (
        tg_op = 'DELETE' or new.team_id <> old.team_id or new.user_id <> old.user_id
    ) then
        perform private.audit(
            'membership.removed', (select auth.uid()), 'team_member', old.user_id::text, old.team_id,
            jsonb_build_object('from', old.role)
        );
    end if;
    if tg_op = 'INSERT' or (
        tg_op = 'UPDATE' and (new.team_id <> old.team_id or new.user_id <> old.user_id)
    ) then
        perform private.audit(
            'membership.added', (select auth.uid()), 'team_member', new.user_id::text, new.team_id,
            jsonb_build_object('role', new.role)
        );
    elsif tg_op = 'UPDATE' and new.role <> old.role then
        perform private.audit(
            'membership.role_changed', (select auth.uid()), 'team_member', new.user_id::text, new.team_id,
            jsonb_build_object('from', old.role, 'role', new.role)
        );
    end if;
    return null;
end;
$$;

comment on function private.audit_membership_change() is
'Audits every membership added, changed or removed (ownership transfers and cascades included).';

revoke all on function private.audit_membership_change() from public, anon, authenticated, service_role;

-- create_team without its own team.created line: the trigger writes it now
create or replace function public.create_team(p_name text)
returns public.teams
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_team public.teams;
begin
    if p_name is null or char_length(btrim(p_name)) not between 1 and 100 then
        perform private.raise_error(400, 'team name must be 1 to 100 characters');
    end if;
    insert into public.teams (name, owner_id) values (btrim(p_name), v_uid) returning * into v_team;
    insert into public.team_members (team_id, user_id, role) values (v_team.id, v_uid, 'owner');
    return v_team;
end;
$$;

-- triggers ------------------------------------------------------------------------------

create trigger teams_audit_created
after insert on public.teams
for each row execute function private.audit_team_created();

create trigger team_members_audit_changes
after insert or delete or update of team_id, user_id, role on public.team_members
for each row execute function private.audit_membership_change();

-- the history starts here: what already exists is recorded as found, so the audit can
-- hold every membership and team to its events from now on
insert into private.audit_events (event, actor_id, subject_type, subject_id, team_id, details)
select
    'membership.recorded' as event,
    null::uuid as actor_id,
    'team_member' as subject_type,
    tm.user_id::text as subject_id,
    tm.team_id,
    jsonb_build_object('role', tm.role) as details
from public.team_members as tm;

insert into private.audit_events (event, actor_id, subject_type, subject_id, team_id, details)
select
    'team.recorded' as event,
    null::uuid as actor_id,
    'team' as subject_type,
    t.id::text as subject_id,
    t.id as team_id,
    jsonb_build_object('owner_id', t.owner_id) as details
from public.teams as t
where not exists (
    select 1 from private.audit_events as e
    where e.event = 'team.created' and e.subject_type = 'team' and e.subject_id = t.id::text
);
