-- Bad input: invalid uuids and enum values (22P02), unknown ids (PT404), expired and reused
-- invitation tokens (PT410), bad credit amounts (PT400, 22P02, 22003), check constraints
-- (23514); after every refusal nothing has changed.
begin;
select plan(51);

select tests.create_user('owner@velro.test') as towner \gset
select tests.create_user('invitee@velro.test') as invitee \gset
select tests.create_user('member@velro.test') as member \gset

insert into public.teams (id, name, owner_id) values ('a0000000-0000-4000-8000-000000000001', 'Alpha', :'towner');
insert into public.team_members (team_id, user_id, role) values
('a0000000-0000-4000-8000-000000000001', :'towner', 'owner'),
('a0000000-0000-4000-8000-000000000001', :'member', 'viewer');
insert into public.projects (id, owner_id, name)
values ('c0000000-0000-4000-8000-000000000003', :'towner', 'Launch');
select tests.authenticate_as(:'towner');
select id as gen
from public.create_generation(
    'fal-ai/flux-pro/v1.1-ultra', 'fox', 'bad-1', 'c0000000-0000-4000-8000-000000000003'
) \gset
select invitation ->> 'token' as token
from (
    select public.invite_member('a0000000-0000-4000-8000-000000000001', 'invitee@velro.test', 'editor') as invitation
) as i
\gset

-- a fingerprint of everything a refused call could have touched
select tests.clear_authentication();
create temporary view fingerprint as
select md5(string_agg(t, '|' order by t)) as digest
from (
    select to_jsonb(p)::text as t from public.profiles as p
    union all
    select to_jsonb(x)::text from public.teams as x
    union all
    select to_jsonb(m)::text from public.team_members as m
    union all
    select to_jsonb(i)::text from public.invitations as i
    union all
    select to_jsonb(r)::text from public.projects as r
    union all
    select to_jsonb(l)::text from public.project_teams as l
    union all
    select to_jsonb(g)::text from public.generations as g
    union all
    select to_jsonb(s)::text from public.generation_shares as s
    union all
    select to_jsonb(c)::text from public.credit_ledger as c
    union all
    select to_jsonb(a)::text from private.audit_events as a
) as everything;
select digest as before from fingerprint \gset

select tests.authenticate_as(:'towner');

-- malformed uuids ----------------------------------------------------------------------------------

select throws_ok(
    $$select public.authorize_generation('not-a-uuid')$$, '22P02',
    'invalid input syntax for type uuid: "not-a-uuid"', 'authorize_generation: a malformed uuid is 22P02'
);
select throws_ok(
    $$select public.authorize_project('123')$$, '22P02',
    'invalid input syntax for type uuid: "123"', 'authorize_project: a malformed uuid is 22P02'
);
select throws_ok(
    $$select public.cancel_generation('x')$$, '22P02', 'invalid input syntax for type uuid: "x"',
    'cancel_generation: a malformed uuid is 22P02'
);
select throws_ok(
    format($$select public.remove_member('a0000000-0000-4000-8000-000000000001', %L)$$, 'nope'), '22P02',
    'invalid input syntax for type uuid: "nope"', 'remove_member: a malformed user id is 22P02'
);
select throws_ok(
    $$select public.share_generation('1-2-3', 'a0000000-0000-4000-8000-000000000001')$$, '22P02',
    'invalid input syntax for type uuid: "1-2-3"', 'share_generation: a malformed uuid is 22P02'
);
select throws_ok(
    $$select public.link_project_team('c0000000-0000-4000-8000-000000000003', 'team-one')$$, '22P02',
    'invalid input syntax for type uuid: "team-one"', 'link_project_team: a malformed team id is 22P02'
);
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', 'k', 'project-one')$$, '22P02',
    'invalid input syntax for type uuid: "project-one"', 'create_generation: a malformed project id is 22P02'
);
select throws_ok(
    $$select * from public.team_usage('')$$, '22P02',
    'invalid input syntax for type uuid: ""', 'team_usage: an empty id is 22P02'
);

-- unknown ids ----------------------------------------------------------------------------------------

select throws_ok(
    format('select public.cancel_generation(%L)', gen_random_uuid()), 'PT404', 'generation not found',
    'cancel_generation: an unknown generation is 404'
);
select throws_ok(
    format($$select public.share_generation(%L, 'a0000000-0000-4000-8000-000000000001')$$, gen_random_uuid()),
    'PT404', 'generation not found', 'share_generation: an unknown generation is 404'
);
select throws_ok(
    format($$select public.share_generation(%L, %L)$$, :'gen', gen_random_uuid()),
    'PT404', 'team not found', 'share_generation: an unknown team is 404'
);
select throws_ok(
    format('select public.unshare_generation(%L, %L)', :'gen', gen_random_uuid()),
    'PT404', 'this generation is not shared with that team', 'unshare_generation: an unknown team is 404'
);
select throws_ok(
    format($$select public.link_project_team(%L, 'a0000000-0000-4000-8000-000000000001')$$, gen_random_uuid()),
    'PT404', 'project not found', 'link_project_team: an unknown project is 404'
);
select throws_ok(
    format($$select public.unlink_project_team('c0000000-0000-4000-8000-000000000003', %L)$$, gen_random_uuid()),
    'PT404', 'this project is not linked to that team', 'unlink_project_team: an unknown team is 404'
);
select throws_ok(
    format('select public.remove_member(%L, %L)', gen_random_uuid(), :'member'),
    'PT404', 'team not found', 'remove_member: an unknown team is 404'
);
select throws_ok(
    format($$select public.remove_member('a0000000-0000-4000-8000-000000000001', %L)$$, gen_random_uuid()),
    'PT404', 'member not found in this team', 'remove_member: an unknown user is 404'
);
select throws_ok(
    format(
        $$select public.change_member_role('a0000000-0000-4000-8000-000000000001', %L, 'editor')$$, gen_random_uuid()
    ),
    'PT404', 'member not found in this team', 'change_member_role: an unknown user is 404'
);
select throws_ok(
    format($$select public.invite_member(%L, 'x@velro.test')$$, gen_random_uuid()),
    'PT404', 'team not found', 'invite_member: an unknown team is 404'
);
select throws_ok(
    format('select public.leave_team(%L)', gen_random_uuid()), 'PT404', 'team not found',
    'leave_team: an unknown team is 404'
);
select throws_ok(
    format('select * from public.project_usage(%L)', gen_random_uuid()), 'PT404', 'project not found',
    'project_usage: an unknown project is 404'
);
select is(
    public.authorize_generation(gen_random_uuid()) ->> 'access_granted', 'false',
    'authorize_generation: an unknown generation is simply not granted'
);

select tests.clear_authentication();
select is((select digest from fingerprint), :'before', 'the malformed and unknown ids changed nothing');

-- invitation tokens -----------------------------------------------------------------------------------

select tests.authenticate_as(:'invitee');
select throws_ok(
    $$select public.accept_invitation('')$$, 'PT404', 'invitation not found: check the token',
    'an empty token is 404'
);
select throws_ok(
    format('select public.accept_invitation(%L)', upper(:'token')), 'PT404', 'invitation not found: check the token',
    'tokens are exact: a changed case is another token'
);
select tests.clear_authentication();
update public.invitations set expires_at = now() - interval '1 second' where email = 'invitee@velro.test';
select tests.authenticate_as(:'invitee');
select throws_ok(
    format('select public.accept_invitation(%L)', :'token'), 'PT410', 'this invitation has expired: ask for a new one',
    'an expired token is 410'
);
select tests.clear_authentication();
update public.invitations set expires_at = now() + interval '1 day' where email = 'invitee@velro.test';
select tests.authenticate_as(:'invitee');
select lives_ok(format('select public.accept_invitation(%L)', :'token'), 'a valid token is accepted');
select throws_ok(
    format('select public.accept_invitation(%L)', :'token'), 'PT410', 'this invitation has already been used',
    'a reused token is 410'
);
select tests.clear_authentication();
select digest as before from fingerprint \gset

-- roles and statuses outside their enums -----------------------------------------------------------

select tests.authenticate_as(:'towner');
select throws_ok(
    $$select public.invite_member('a0000000-0000-4000-8000-000000000001', 'x@velro.test', 'superadmin')$$,
    '22P02', 'invalid input value for enum team_role: "superadmin"', 'invite_member: a role outside the enum'
);
select throws_ok(
    format($$select public.change_member_role('a0000000-0000-4000-8000-000000000001', %L, 'Admin')$$, :'member'),
    '22P02', 'invalid input value for enum team_role: "Admin"', 'change_member_role: roles are lowercase'
);
select throws_ok(
    $$select public.link_project_team(
        'c0000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-000000000001', 'root'
    )$$,
    '22P02', 'invalid input value for enum team_role: "root"', 'link_project_team: a level outside the enum'
);
select throws_ok(
    format($$select public.share_generation(%L, 'a0000000-0000-4000-8000-000000000001', '')$$, :'gen'),
    '22P02', 'invalid input value for enum team_role: ""', 'share_generation: an empty role'
);
select throws_ok(
    format($$select public.change_member_role('a0000000-0000-4000-8000-000000000001', %L, null)$$, :'member'),
    'PT400', 'role must be one of viewer, editor, admin', 'change_member_role: a missing role'
);
select throws_ok(
    $$update public.projects set visibility = 'secret'$$,
    '22P02', 'invalid input value for enum project_visibility: "secret"', 'projects: a visibility outside the enum'
);
select tests.authenticate_as_service_role();
select throws_ok(
    format($$select public.record_generation_progress(%L, 'done')$$, :'gen'),
    '22P02', 'invalid input value for enum generation_status: "done"',
    'record_generation_progress: a status outside the enum'
);
select throws_ok(
    format($$select public.grant_credits(%L, 10, 'gift')$$, :'towner'),
    '22P02', 'invalid input value for enum credit_kind: "gift"', 'grant_credits: a kind outside the enum'
);

-- credit amounts --------------------------------------------------------------------------------------

select throws_ok(
    format('select public.grant_credits(%L, -5)', :'towner'), 'PT400',
    'credit amount must be a positive whole number', 'a negative amount is 400'
);
select throws_ok(
    format('select public.grant_credits(%L, 0)', :'towner'), 'PT400',
    'credit amount must be a positive whole number', 'a zero amount is 400'
);
select throws_ok(
    format($$select public.grant_credits(%L, '1.5')$$, :'towner'), '22P02',
    'invalid input syntax for type integer: "1.5"', 'a fractional amount is 22P02'
);
select throws_ok(
    format($$select public.grant_credits(%L, 'ten')$$, :'towner'), '22P02',
    'invalid input syntax for type integer: "ten"', 'a non-numeric amount is 22P02'
);
select throws_ok(
    format($$select public.grant_credits(%L, '99999999999')$$, :'towner'), '22003',
    'value "99999999999" is out of range for type integer', 'an amount beyond integer range is 22003'
);
select throws_ok(
    format('select public.grant_credits(%L, 2147483647)', :'towner'), 'PT409', null,
    'a grant that would overflow the balance is refused at the balance ceiling (409), before any overflow'
);

-- check constraints ---------------------------------------------------------------------------------

select tests.authenticate_as(:'towner');
select throws_ok(
    format('update public.generations set title = %L', repeat('t', 201)), '23514', null,
    'a title over 200 characters violates its check'
);
select throws_ok(
    format('update public.projects set description = %L', repeat('d', 2001)), '23514', null,
    'a description over 2000 characters violates its check'
);
select throws_ok(
    format('update public.teams set name = %L', repeat('n', 101)), '23514', null,
    'a team name over 100 characters violates its check'
);
select throws_ok(
    format('update public.profiles set display_name = %L', repeat('n', 101)), '23514', null,
    'a display name over 100 characters violates its check'
);
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', 'k', null, '{"seed": -1}')$$,
    'PT400', 'parameters.seed must be at least 0', 'a parameter below its minimum'
);
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', 'k', null, '{"num_images": 1.5}')$$,
    'PT400', 'parameters.num_images must be of type integer', 'a fractional integer parameter'
);
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', 'k', null, '{"seed": ')$$,
    '22P02', null, 'malformed JSON parameters are 22P02'
);
select throws_ok(
    format($$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', %L)$$, repeat('k', 256)),
    'PT400', 'idempotency_key must be 1 to 255 characters', 'an idempotency key over 255 characters'
);

-- nothing changed ---------------------------------------------------------------------------------------

select tests.clear_authentication();
select is((select digest from fingerprint), :'before', 'no refused call changed any row of any table');
select results_eq(
    format('select credits from public.profiles where id = %L', :'towner'), 'values (50)',
    'the balance is what the one allowed charge left'
);

select * from finish();
rollback;
