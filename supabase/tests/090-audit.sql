-- The audit log: every security-relevant RPC leaves an event; no API role reads, writes,
-- changes or deletes it except the service role's read; not even the owner changes a line.
begin;
select plan(29);

select tests.create_user('owner@velro.test') as towner \gset
select tests.create_user('member@velro.test') as member \gset
select tests.create_user('leaver@velro.test') as leaver \gset

-- a session of team life: every RPC that should leave a trace
select tests.live_a_team_life(:'towner', :'member', :'leaver', 'Audited') as team \gset
insert into public.projects (name) values ('Audited project') returning id as project \gset
select public.link_project_team(:'project', :'team', 'editor');
select id as gen from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'audited', 'audit-1', :'project') \gset
select public.share_generation(:'gen', :'team', 'viewer');
select public.unshare_generation(:'gen', :'team');
select public.cancel_generation(:'gen');
select public.unlink_project_team(:'project', :'team');
select public.remove_member(:'team', :'member');

select tests.clear_authentication();
select results_eq(
    $$select event, actor_id, team_id from private.audit_events
    where event not like 'credits.%' and event not like 'membership.%' order by id$$,
    format(
        $$values
        ('team.created', %1$L::uuid, %2$L::uuid),
        ('team.member_invited', %1$L, %2$L),
        ('team.member_invited', %1$L, %2$L),
        ('team.invitation_accepted', %3$L, %2$L),
        ('team.invitation_accepted', %4$L, %2$L),
        ('team.member_left', %4$L, %2$L),
        ('team.role_changed', %1$L, %2$L),
        ('project.team_linked', %1$L, %2$L),
        ('generation.shared', %1$L, %2$L),
        ('generation.unshared', %1$L, %2$L),
        ('generation.cancelled', %1$L, null),
        ('project.team_unlinked', %1$L, %2$L),
        ('team.member_removed', %1$L, %2$L)$$,
        :'towner', :'team', :'member', :'leaver'
    ),
    'each team, invitation, role, link, share and cancel call leaves one event, in order, with actor and team'
);
select results_eq(
    format(
        $$select event from private.audit_events where actor_id = %L and event like 'credits.%%' order by id$$,
        :'towner'
    ),
    $$values ('credits.grant'), ('credits.charge'), ('credits.refund')$$,
    'credit movements are audited: signup grant, charge, refund'
);
select ok(
    (select bool_and(occurred_at is not null and details is not null) from private.audit_events),
    'every event has a time and details'
);
select is(
    (select details from private.audit_events where event = 'team.role_changed'),
    '{"from": "viewer", "to": "editor"}'::jsonb,
    'a role change records from and to'
);

-- API roles cannot read or write the log ----------------------------------------------------------

select tests.authenticate_as(:'towner');
select throws_ok(
    'select * from private.audit_events', '42501', 'permission denied for table audit_events',
    'a user cannot read the audit log'
);
select throws_ok(
    $$insert into private.audit_events (event) values ('forged.event')$$, '42501',
    'permission denied for table audit_events', 'a user cannot write to it'
);
select throws_ok(
    $$select private.audit('forged.event', auth.uid())$$, '42501',
    'permission denied for function audit', 'nor call the audit writer'
);
select throws_ok(
    'update private.audit_events set details = ''{}''', '42501', 'permission denied for table audit_events',
    'a user cannot change the log'
);
select throws_ok(
    'delete from private.audit_events', '42501', 'permission denied for table audit_events',
    'a user cannot delete from the log'
);
select tests.authenticate_as_anon();
select throws_ok(
    'select * from private.audit_events', '42501', 'permission denied for schema private',
    'anon cannot read the audit log'
);
select throws_ok(
    $$insert into private.audit_events (event) values ('forged.event')$$, '42501',
    'permission denied for schema private', 'anon cannot write to it'
);
select throws_ok(
    'delete from private.audit_events', '42501', 'permission denied for schema private',
    'anon cannot delete from it'
);

-- the service role reads and appends, never changes ------------------------------------------------

select tests.authenticate_as_service_role();
select isnt_empty('select id from private.audit_events', 'the service role reads the log');
select lives_ok(
    $$select private.audit('auth.login_failed', null, 'email', 'x@velro.test', null, '{"reason": "bad password"}')$$,
    'the service role appends an event through private.audit'
);
select throws_ok(
    $$select private.audit('Not An Event', null)$$, '23514', null,
    'event names are checked (scope.action, lowercase)'
);
select throws_ok(
    $$insert into private.audit_events (event) values ('forged.event')$$, '42501',
    'permission denied for table audit_events', 'the service role does not insert around private.audit'
);
select throws_ok(
    'update private.audit_events set details = ''{}''', '42501', 'permission denied for table audit_events',
    'the service role cannot change a line'
);
select throws_ok(
    'delete from private.audit_events', '42501', 'permission denied for table audit_events',
    'the service role cannot delete a line'
);
select throws_ok(
    'truncate private.audit_events', '42501', 'permission denied for table audit_events',
    'the service role cannot truncate the log'
);

-- not even the owner of the table changes a line ----------------------------------------------------

select tests.clear_authentication();
select count(*) as events_before from private.audit_events \gset
select throws_ok(
    'update private.audit_events set details = ''{}''', 'PT403', 'audit events are append-only',
    'the table owner cannot update a line'
);
select throws_ok(
    'delete from private.audit_events', 'PT403', 'audit events are append-only',
    'the table owner cannot delete a line'
);
select throws_ok(
    'truncate private.audit_events', 'PT403', 'audit events are append-only',
    'the table owner cannot truncate the log'
);
select is(
    (select count(*) from private.audit_events), :'events_before'::bigint,
    'every line is still there'
);

-- the same holds for every API role, whichever way it asks -------------------------------------------

select ok(
    not has_table_privilege('authenticated', 'private.audit_events', 'select, insert, update, delete, truncate'),
    'authenticated holds no privilege on the audit log'
);
select ok(
    not has_table_privilege('anon', 'private.audit_events', 'select, insert, update, delete, truncate'),
    'anon holds no privilege on the audit log'
);
select ok(
    not has_table_privilege('service_role', 'private.audit_events', 'insert, update, delete, truncate'),
    'service_role may only read it'
);
select ok(
    not has_function_privilege('authenticated', 'private.audit(text, uuid, text, text, uuid, jsonb)', 'execute')
    and not has_function_privilege('anon', 'private.audit(text, uuid, text, text, uuid, jsonb)', 'execute'),
    'the audit writer is not executable by users'
);
select has_trigger('private', 'audit_events', 'audit_events_are_append_only', 'the append-only trigger exists');
select has_trigger('private', 'audit_events', 'audit_events_are_never_truncated', 'the truncate guard exists');

select * from finish();
rollback;
