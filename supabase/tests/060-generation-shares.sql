-- Generation shares: share_generation/unshare_generation, who reads the share rows and the
-- shared generation, least(team role, share role), and revocation in the next statement.
begin;
select plan(60);

select tests.create_user('creator@velro.test') as creator \gset
select tests.create_user('sowner@velro.test') as sowner \gset
select tests.create_user('sadmin@velro.test') as sadmin \gset
select tests.create_user('seditor@velro.test') as seditor \gset
select tests.create_user('sviewer@velro.test') as sviewer \gset
select tests.create_user('other@velro.test') as other \gset
select tests.create_user('stranger@velro.test') as stranger \gset
select tests.create_user('sue@velro.test') as sue \gset

-- team Share: the creator is an editor in it (enough to share into it); Beta is another
-- team; in Gamma she is only a viewer
insert into public.teams (id, name, owner_id) values
('a0000000-0000-4000-8000-000000000001', 'Share', :'sowner'),
('b0000000-0000-4000-8000-000000000002', 'Beta', :'other'),
('e0000000-0000-4000-8000-000000000005', 'Gamma', :'other');
insert into public.team_members (team_id, user_id, role) values
('a0000000-0000-4000-8000-000000000001', :'sowner', 'owner'),
('a0000000-0000-4000-8000-000000000001', :'sadmin', 'admin'),
('a0000000-0000-4000-8000-000000000001', :'seditor', 'editor'),
('a0000000-0000-4000-8000-000000000001', :'sviewer', 'viewer'),
('a0000000-0000-4000-8000-000000000001', :'creator', 'editor'),
('a0000000-0000-4000-8000-000000000001', :'sue', 'admin'),
('b0000000-0000-4000-8000-000000000002', :'other', 'owner'),
('e0000000-0000-4000-8000-000000000005', :'other', 'owner'),
('e0000000-0000-4000-8000-000000000005', :'creator', 'viewer');
update public.profiles set status = 'suspended' where id = :'sue';

select tests.authenticate_as(:'creator');
select id as gen from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'a shared fox', 'share-1') \gset

-- before sharing, nobody else reads it
select tests.authenticate_as(:'sowner');
select is_empty('select id from public.generations', 'before sharing, the team reads nothing');

-- sharing -----------------------------------------------------------------------------------------

select tests.authenticate_as(:'creator');
select throws_ok(
    format($$select public.share_generation(%L, 'b0000000-0000-4000-8000-000000000002', 'viewer')$$, :'gen'),
    'PT404', 'team not found', 'the creator cannot share with a team she is not in'
);
select throws_ok(
    format($$select public.share_generation(%L, 'e0000000-0000-4000-8000-000000000005', 'viewer')$$, :'gen'),
    'PT403', 'this needs the editor role or higher in the team', 'sharing into a team needs at least editor there'
);
select throws_ok(
    format($$select public.share_generation(%L, 'a0000000-0000-4000-8000-000000000001', 'owner')$$, :'gen'),
    'PT400', 'role must be viewer, editor or admin', 'a share cannot grant owner'
);
select throws_ok(
    format($$select public.share_generation(%L, 'a0000000-0000-4000-8000-000000000001', 'boss')$$, :'gen'),
    '22P02', 'invalid input value for enum team_role: "boss"', 'a role outside the enum is refused'
);
select tests.authenticate_as(:'sowner');
select throws_ok(
    format($$select public.share_generation(%L, 'a0000000-0000-4000-8000-000000000001', 'admin')$$, :'gen'),
    'PT404', 'generation not found', 'a team owner cannot share what she cannot read (404)'
);
select tests.authenticate_as(:'sue');
select throws_ok(
    format($$select public.share_generation(%L, 'a0000000-0000-4000-8000-000000000001', 'admin')$$, :'gen'),
    'PT403', 'this account is suspended', 'a suspended user cannot share'
);
select tests.authenticate_as_anon();
select throws_ok(
    format($$select public.share_generation(%L, 'a0000000-0000-4000-8000-000000000001', 'admin')$$, :'gen'),
    '42501', 'permission denied for function share_generation', 'anon cannot share'
);
select tests.authenticate_as(:'creator');
select throws_ok(
    format(
        $$insert into public.generation_shares (generation_id, team_id, role)
        values (%L, 'a0000000-0000-4000-8000-000000000001', 'admin')$$,
        :'gen'
    ),
    '42501', 'permission denied for table generation_shares', 'shares are made only by share_generation'
);
select tests.clear_authentication();
select is_empty('select 1 from public.generation_shares', 'the refused shares wrote nothing');

select tests.authenticate_as(:'creator');
select results_eq(
    format(
        $$select generation_id, team_id, role::text, shared_by
        from public.share_generation(%L, 'a0000000-0000-4000-8000-000000000001', 'editor')$$, :'gen'
    ),
    format($$values (%L::uuid, 'a0000000-0000-4000-8000-000000000001'::uuid, 'editor', %L::uuid)$$, :'gen', :'creator'),
    'the creator shares her generation with her team at editor'
);
select tests.clear_authentication();
select ok(
    exists (
        select 1 from private.audit_events
        where
            event = 'generation.shared' and actor_id = :'creator' and subject_id = :'gen'
            and team_id = 'a0000000-0000-4000-8000-000000000001' and details = '{"role": "editor"}'
    ),
    'the share is audited'
);

-- each team role, through the share: least(team role, share role)
select tests.authenticate_as(:'sowner');
select results_eq('select id from public.generations', format('values (%L::uuid)', :'gen'), 'the team owner reads it');
select is(
    public.authorize_generation(:'gen'),
    '{"access_granted": true, "access_method": "generation_share", "effective_role": "editor",
      "permissions": ["read", "write"]}'::jsonb,
    'as editor: the share caps the team owner'
);
select results_eq(
    'select team_id, role::text from public.generation_shares',
    $$values ('a0000000-0000-4000-8000-000000000001'::uuid, 'editor')$$,
    'and reads the share row'
);
select tests.authenticate_as(:'sadmin');
select results_eq('select id from public.generations', format('values (%L::uuid)', :'gen'), 'a team admin reads it');
select is(public.authorize_generation(:'gen') ->> 'effective_role', 'editor', 'as editor');
select tests.authenticate_as(:'seditor');
select results_eq('select id from public.generations', format('values (%L::uuid)', :'gen'), 'a team editor reads it');
select is(public.authorize_generation(:'gen') ->> 'effective_role', 'editor', 'as editor');
select results_eq(
    format($$update public.generations set title = 'by the editor' where id = %L returning title$$, :'gen'),
    $$values ('by the editor')$$,
    'and may retitle it'
);
select is_empty(format('delete from public.generations where id = %L returning id', :'gen'), 'but not delete it');
select throws_ok(
    format($$select public.share_generation(%L, 'a0000000-0000-4000-8000-000000000001', 'admin')$$, :'gen'),
    'PT403', 'this needs the owner role on the generation', 'nor reshare it (403: she can read it)'
);
select tests.authenticate_as(:'sviewer');
select results_eq('select id from public.generations', format('values (%L::uuid)', :'gen'), 'a team viewer reads it');
select is(
    public.authorize_generation(:'gen'),
    '{"access_granted": true, "access_method": "generation_share", "effective_role": "viewer",
      "permissions": ["read"]}'::jsonb,
    'as viewer: her team role caps the share'
);
select is_empty(
    format($$update public.generations set title = 'by the viewer' where id = %L returning id$$, :'gen'),
    'a viewer cannot retitle it'
);
select throws_ok(
    format('select public.cancel_generation(%L)', :'gen'),
    'PT403', 'this needs the editor role on the generation', 'nor cancel it'
);
select tests.authenticate_as(:'other');
select is_empty('select id from public.generations', 'a member of another team reads nothing');
select is_empty('select team_id from public.generation_shares', 'nor the share');
select is(public.authorize_generation(:'gen') ->> 'access_granted', 'false', 'and is denied');
select tests.authenticate_as(:'stranger');
select is_empty('select id from public.generations', 'a stranger reads nothing');
select is_empty('select team_id from public.generation_shares', 'nor the share');
select tests.authenticate_as(:'sue');
select is_empty('select id from public.generations', 'a suspended team admin reads nothing');
select is_empty('select team_id from public.generation_shares', 'nor the share');
select is(public.authorize_generation(:'gen') ->> 'access_granted', 'false', 'and is denied');
select tests.authenticate_as_anon();
select throws_ok(
    'select team_id from public.generation_shares', '42501', 'permission denied for table generation_shares',
    'anon cannot read shares'
);

-- raising the share to admin lets the team's admins delete, but not share
select tests.authenticate_as(:'creator');
select lives_ok(
    format($$select public.share_generation(%L, 'a0000000-0000-4000-8000-000000000001', 'admin')$$, :'gen'),
    'sharing again changes the role'
);
select tests.authenticate_as(:'sadmin');
select is(
    public.authorize_generation(:'gen') - 'access_method',
    '{"access_granted": true, "effective_role": "admin", "permissions": ["read", "write", "delete"]}'::jsonb,
    'a team admin now holds admin, which does not share'
);
select throws_ok(
    format($$select public.share_generation(%L, 'a0000000-0000-4000-8000-000000000001', 'viewer')$$, :'gen'),
    'PT403', 'this needs the owner role on the generation', 'so she cannot change the share''s role'
);
select tests.authenticate_as(:'seditor');
select is(public.authorize_generation(:'gen') ->> 'effective_role', 'editor', 'a team editor stays editor');
select tests.authenticate_as(:'sviewer');
select throws_ok(
    format($$select public.unshare_generation(%L, 'a0000000-0000-4000-8000-000000000001')$$, :'gen'),
    'PT403', 'this needs the admin role on the generation', 'a viewer cannot unshare'
);
select tests.authenticate_as(:'stranger');
select throws_ok(
    format($$select public.unshare_generation(%L, 'a0000000-0000-4000-8000-000000000001')$$, :'gen'),
    'PT404', 'generation not found', 'a stranger cannot unshare (404)'
);
select tests.authenticate_as_anon();
select throws_ok(
    format($$select public.unshare_generation(%L, 'a0000000-0000-4000-8000-000000000001')$$, :'gen'),
    '42501', 'permission denied for function unshare_generation', 'anon cannot unshare'
);

-- revocation -----------------------------------------------------------------------------------------

select tests.authenticate_as(:'sowner');
select lives_ok(
    format($$select public.remove_member('a0000000-0000-4000-8000-000000000001', %L)$$, :'sviewer'),
    'the team owner removes the viewer'
);
select tests.authenticate_as(:'sviewer');
select is_empty('select id from public.generations', 'the removed viewer reads the shared generation no more');
select is(public.authorize_generation(:'gen') ->> 'access_granted', 'false', 'and is denied');

select tests.clear_authentication();
update public.profiles set status = 'suspended' where id = :'seditor';
select tests.authenticate_as(:'seditor');
select is_empty('select id from public.generations', 'a member suspended now reads nothing in the next statement');
select tests.clear_authentication();
update public.profiles set status = 'active' where id = :'seditor';

select tests.authenticate_as(:'sadmin');
select lives_ok(
    format($$select public.unshare_generation(%L, 'a0000000-0000-4000-8000-000000000001')$$, :'gen'),
    'a team admin holding admin through the share ends it'
);
select is_empty('select id from public.generations', 'and loses it herself in the next statement');
select throws_ok(
    format($$select public.unshare_generation(%L, 'a0000000-0000-4000-8000-000000000001')$$, :'gen'),
    'PT404', 'this generation is not shared with that team', 'so unsharing again is 404 for her'
);
select tests.authenticate_as(:'seditor');
select is_empty('select id from public.generations', 'the team''s editor reads it no more');
select is(public.authorize_generation(:'gen') ->> 'access_granted', 'false', 'and is denied');
select tests.authenticate_as(:'creator');
select throws_ok(
    format($$select public.unshare_generation(%L, 'a0000000-0000-4000-8000-000000000001')$$, :'gen'),
    'PT404', 'this generation is not shared with that team', 'the creator unsharing again is 404'
);
select tests.clear_authentication();
select ok(
    exists (
        select 1 from private.audit_events
        where event = 'generation.unshared' and actor_id = :'sadmin' and subject_id = :'gen'
    ),
    'the unshare is audited'
);

-- the team's owner and admins take out whatever was put into their team
select tests.authenticate_as(:'creator');
select lives_ok(
    format($$select public.share_generation(%L, 'a0000000-0000-4000-8000-000000000001', 'viewer')$$, :'gen'),
    'shared again, at viewer'
);
select tests.authenticate_as(:'sowner');
select is(
    public.authorize_generation(:'gen') ->> 'effective_role', 'viewer', 'the team owner holds only viewer through it'
);
select lives_ok(
    format($$select public.unshare_generation(%L, 'a0000000-0000-4000-8000-000000000001')$$, :'gen'),
    'yet she takes it out of her team'
);
select is_empty('select id from public.generations', 'and her team reads it no more');

-- a deleted team takes its shares with it
select tests.authenticate_as(:'creator');
select lives_ok(
    format($$select public.share_generation(%L, 'a0000000-0000-4000-8000-000000000001', 'viewer')$$, :'gen'),
    'shared again'
);
select tests.clear_authentication();
delete from public.teams where id = 'a0000000-0000-4000-8000-000000000001';
select is_empty('select 1 from public.generation_shares', 'deleting the team deletes its shares');
select tests.authenticate_as(:'sowner');
select is_empty('select id from public.generations', 'and its former members read nothing');

select * from finish();
rollback;
