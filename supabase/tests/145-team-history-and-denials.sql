-- Team history and denials in the audit: every team's creation and every membership
-- change leaves its event, whatever path wrote it; the integrity audit holds the tables to
-- that history; denials of authorize_generation are counted per user, resource and hour.
begin;
select plan(27);

select tests.create_user('owner@velro.test') as towner \gset
select tests.create_user('member@velro.test') as member \gset
select tests.create_user('leaver@velro.test') as leaver \gset
select tests.create_user('stranger@velro.test') as stranger \gset

create function pg_temp.history(p_team uuid)
returns table (event text, actor_id uuid, subject_id text, role text, from_role text)
language sql
as $$
    select e.event, e.actor_id, e.subject_id, e.details ->> 'role', e.details ->> 'from'
    from private.audit_events as e
    where e.team_id = p_team and (e.subject_type = 'team_member' or e.event like 'team.created')
    order by e.id
$$;

create function pg_temp.flagged(p_invariant text, p_subject_id text)
returns boolean
language sql
as $$
    select exists (
        select 1 from private.integrity_audit() as a
        where a.invariant = p_invariant and a.subject_id = p_subject_id
    )
$$;

-- a team's life through the RPCs
select tests.live_a_team_life(:'towner', :'member', :'leaver', 'History') as team \gset
select public.transfer_team_ownership(:'team', :'member');
select tests.authenticate_as(:'member');
select public.remove_member(:'team', :'towner');
select tests.clear_authentication();

select results_eq(
    format('select * from pg_temp.history(%L)', :'team'),
    format(
        $$values
        ('team.created', %1$L::uuid, %2$L, null::text, null::text),
        ('membership.added', %1$L, %1$L, 'owner', null),
        ('membership.added', %3$L, %3$L, 'viewer', null),
        ('membership.added', %4$L, %4$L, 'viewer', null),
        ('membership.removed', %4$L, %4$L, null, 'viewer'),
        ('membership.role_changed', %1$L, %3$L, 'editor', 'viewer'),
        ('membership.role_changed', %1$L, %1$L, 'admin', 'owner'),
        ('membership.role_changed', %1$L, %3$L, 'owner', 'editor'),
        ('membership.removed', %3$L, %1$L, null, 'admin')$$,
        :'towner', :'team', :'member', :'leaver'
    ),
    'creation, joining, leaving, a role change, an ownership transfer and a removal each leave their event,'
    || ' in order, with actor'
);
select is_empty('select * from private.integrity_audit()', 'the audit passes after a team''s life through the RPCs');

-- the seed's path: rows written directly, as an operator or the demo seed does
insert into public.teams (name, owner_id) values ('Seeded', :'stranger') returning id as seeded \gset
insert into public.team_members (team_id, user_id, role) values (:'seeded', :'stranger', 'owner');
select results_eq(
    format('select event, actor_id, role from pg_temp.history(%L)', :'seeded'),
    $$values ('team.created', null::uuid, null::text), ('membership.added', null, 'owner')$$,
    'a team and a membership written directly are audited too, with no actor'
);
update public.team_members set role = 'owner' where team_id = :'seeded' and user_id = :'stranger';
select is(
    (select count(*) from private.audit_events where team_id = :'seeded' and event = 'membership.role_changed'),
    0::bigint,
    'an update that leaves the role as it was is no change'
);

-- cascades: deleting a team removes its memberships, and says so
delete from public.teams where id = :'seeded';
select results_eq(
    format('select event, from_role from pg_temp.history(%L) offset 2', :'seeded'),
    $$values ('membership.removed', 'owner')$$,
    'a deleted team''s memberships are audited as removed'
);
select is_empty('select * from private.integrity_audit()', 'the audit passes after direct writes and a cascade');

-- breaches, planted with the triggers off (only the superuser can)
set local session_replication_role = replica;
insert into public.teams (name, owner_id) values ('Silent', :'stranger') returning id as silent \gset
insert into public.team_members (team_id, user_id, role) values (:'silent', :'stranger', 'owner');
set local session_replication_role = origin;
select ok(
    pg_temp.flagged('every team''s creation is audited', :'silent'), 'a team without its creation event is caught'
);
select ok(
    pg_temp.flagged('every membership change is audited', :'silent' || '/' || :'stranger'),
    'a membership without its event is caught'
);
delete from public.team_members where team_id = :'silent';
set local session_replication_role = replica;
delete from public.teams where id = :'silent';
set local session_replication_role = origin;

set local session_replication_role = replica;
update public.team_members set role = 'viewer' where team_id = :'team' and user_id = :'member';
set local session_replication_role = origin;
select ok(
    pg_temp.flagged('every membership change is audited', :'team' || '/' || :'member'),
    'a role changed without its event is caught'
);
update public.team_members set role = 'owner' where team_id = :'team' and user_id = :'member';
select ok(
    not pg_temp.flagged('every membership change is audited', :'team' || '/' || :'member'),
    'with its event (the trigger) the role is accounted for again'
);

set local session_replication_role = replica;
delete from public.team_members where team_id = :'team' and user_id = :'member';
set local session_replication_role = origin;
select ok(
    pg_temp.flagged('every membership removal is audited', :'team' || '/' || :'member'),
    'a membership removed without its event is caught'
);
insert into public.team_members (team_id, user_id, role) values (:'team', :'member', 'owner');
select is_empty('select * from private.integrity_audit()', 'restored through the trigger, the audit passes');

-- operators only: the history and the denials are out of the API roles' reach
select ok(
    not has_table_privilege('authenticated', 'private.audit_denials', 'select')
    and not has_table_privilege('authenticated', 'private.audit_denials', 'insert')
    and not has_table_privilege('anon', 'private.audit_denials', 'select')
    and not has_table_privilege('service_role', 'private.audit_denials', 'update'),
    'no API role may read or write the denial counts'
);
select ok(
    not has_function_privilege('authenticated', 'private.record_denial(uuid, text, uuid, text, bigint)', 'execute')
    and not has_function_privilege('anon', 'private.record_denial(uuid, text, uuid, text, bigint)', 'execute')
    and not has_function_privilege('service_role', 'private.record_denial(uuid, text, uuid, text, bigint)', 'execute'),
    'no API role may record (or forge) a denial'
);

-- denials of authorize_generation, counted per (user, resource, hour)
select tests.authenticate_as(:'towner');
select id as gen from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'mine', 'k-1') \gset
select is(
    public.authorize_generation(:'gen') ->> 'access_granted', 'true', 'the owner is granted'
);
select tests.authenticate_as(:'stranger');
select is(
    public.authorize_generation(:'gen') ->> 'access_granted', 'false', 'a stranger is denied'
);
select public.authorize_generation(:'gen');
select public.authorize_generation(:'gen');
select public.authorize_generation('00000000-0000-4000-8000-00000000dead');
select public.authorize_generation('00000000-0000-4000-8000-00000000beef');
select throws_ok(
    'select * from private.audit_denials', '42501', null, 'the denied user cannot read the denial counts'
);
select tests.clear_authentication();

select results_eq(
    format(
        $$select resource_type, resource_id, denials, hour = date_trunc('hour', now()), last_reason
        from private.audit_denials where user_id = %L order by resource_id desc$$,
        :'stranger'
    ),
    format(
        $$values
        ('generation', %1$L::uuid, 3::bigint, true, 'authorize_generation'),
        ('generation', '00000000-0000-0000-0000-000000000000'::uuid, 2::bigint, true, 'authorize_generation')$$,
        :'gen'
    ),
    'three denials of one generation are one row counting 3; two made-up ids share one row'
);
select is(
    (select count(*) from private.audit_denials where user_id = :'towner'),
    0::bigint,
    'a grant records nothing'
);

-- the unit is the hour: a denial in another hour starts its own row
select private.record_denial(:'stranger', 'generation', :'gen', 'test');
update private.audit_denials set hour = hour - interval '1 hour'
where user_id = :'stranger' and resource_id = :'gen';
select private.record_denial(:'stranger', 'generation', :'gen', 'test');
select results_eq(
    format(
        $$select denials from private.audit_denials where user_id = %L and resource_id = %L order by hour$$,
        :'stranger', :'gen'
    ),
    $$values (4::bigint), (1::bigint)$$,
    'the next hour''s denial starts a new row; the past hour''s count is kept'
);

-- a batch of cached denials is one upsert of its count
select private.record_denial(:'stranger', 'project', '00000000-0000-4000-8000-0000000000aa', 'cached', 5);
select is(
    (select denials from private.audit_denials where user_id = :'stranger' and resource_type = 'project'),
    5::bigint,
    'a count is added at once (batches of cached denials)'
);
select throws_ok(
    $$select private.record_denial(gen_random_uuid(), 'invoice', gen_random_uuid(), 'x')$$,
    '23514', null, 'only generations, projects and teams are resources'
);
select lives_ok(
    $$select private.record_denial(null, 'generation', gen_random_uuid(), 'x')$$,
    'an anonymous caller records nothing (and fails nothing)'
);

-- the function is volatile now: that is what lets it write; its answers are unchanged
select is(
    (select provolatile::text from pg_catalog.pg_proc where oid = 'public.authorize_generation(uuid)'::regprocedure),
    'v',
    'authorize_generation is volatile (it writes the denials it answers)'
);
select ok(
    has_function_privilege('authenticated', 'public.authorize_generation(uuid)', 'execute')
    and not has_function_privilege('anon', 'public.authorize_generation(uuid)', 'execute'),
    'authorize_generation keeps its grants'
);

-- a read-only transaction (PostgREST's GET) still gets its answer; the denial goes unrecorded
select denials as before from private.audit_denials
where user_id = :'stranger' and resource_id = :'gen' and hour = date_trunc('hour', now()) \gset
set local transaction_read_only = on;
select tests.authenticate_as(:'stranger');
select is(
    public.authorize_generation(:'gen') ->> 'access_granted', 'false',
    'in a read-only transaction the denial is still answered'
);
select tests.clear_authentication();
select is(
    (
        select denials from private.audit_denials
        where user_id = :'stranger' and resource_id = :'gen' and hour = date_trunc('hour', now())
    ),
    :'before'::bigint,
    'and not recorded'
);

select * from finish();
rollback;
