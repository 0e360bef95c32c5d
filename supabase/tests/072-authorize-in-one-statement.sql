-- The app's authorization miss in one statement: private.authorize_generation_for checks
-- the session in the claims it is given, answers exactly what authorize_generation answers
-- as that caller, with the answer's cache tags, and leaves no role or claims behind.
begin;
select plan(9);

select tests.create_user('owner@velro.test') as owner \gset
select tests.create_user('stranger@velro.test') as stranger \gset

insert into public.projects (id, owner_id, name, visibility) values
('c0000000-0000-4000-8000-000000000001', :'owner', 'Private project', 'private');
insert into public.generations (id, owner_id, project_id, model_id, prompt, cost, idempotency_key) values
(
    'd0000000-0000-4000-8000-000000000001', :'owner', 'c0000000-0000-4000-8000-000000000001',
    'fal-ai/veo3', 'g1', 500, 'g1'
);
insert into auth.sessions (id, user_id, created_at, updated_at, aal) values
('e0000000-0000-4000-8000-000000000001', :'owner', now(), now(), 'aal1'),
('e0000000-0000-4000-8000-000000000002', :'stranger', now(), now(), 'aal1');

select is(
    (
        select row(decision, tags)::text from private.authorize_generation_for(
            jsonb_build_object(
                'sub', :'owner', 'role', 'authenticated', 'session_id', 'e0000000-0000-4000-8000-000000000001'
            ),
            'd0000000-0000-4000-8000-000000000001'
        )
    ),
    row(
        jsonb_build_object(
            'access_granted', true, 'access_method', 'direct_ownership', 'effective_role', 'owner',
            'permissions', jsonb_build_array('read', 'write', 'share', 'delete')
        ),
        array[
            'user:' || :'owner', 'generation:d0000000-0000-4000-8000-000000000001',
            'project:c0000000-0000-4000-8000-000000000001'
        ]
    )::text,
    'the owner is granted, with the tags of the answer'
);
select is(
    (
        select decision ->> 'access_granted' from private.authorize_generation_for(
            jsonb_build_object(
                'sub', :'stranger', 'role', 'authenticated', 'session_id', 'e0000000-0000-4000-8000-000000000002'
            ),
            'd0000000-0000-4000-8000-000000000001'
        )
    ),
    'false',
    'a stranger is denied'
);
select is(current_user::text, 'postgres', 'the caller''s role does not outlive the call');
select is(
    coalesce(current_setting('request.jwt.claims', true), ''), '',
    'nor do the caller''s claims'
);

select throws_ok(
    format(
        'select * from private.authorize_generation_for(%L, %L)',
        jsonb_build_object(
            'sub', :'stranger', 'role', 'authenticated', 'session_id', 'e0000000-0000-4000-8000-000000000001'
        ),
        'd0000000-0000-4000-8000-000000000001'
    ),
    'PT401', 'This session has ended; sign in again.',
    'a session of another user does not open as this one'
);
delete from auth.sessions where id = 'e0000000-0000-4000-8000-000000000001';
select throws_ok(
    format(
        'select * from private.authorize_generation_for(%L, %L)',
        jsonb_build_object(
            'sub', :'owner', 'role', 'authenticated', 'session_id', 'e0000000-0000-4000-8000-000000000001'
        ),
        'd0000000-0000-4000-8000-000000000001'
    ),
    'PT401', 'This session has ended; sign in again.',
    'an ended session gets 401 and no answer'
);

-- it trusts the claims it is given, so no API role may call it
select tests.authenticate_as(:'stranger');
select throws_ok(
    format(
        'select * from private.authorize_generation_for(%L, %L)',
        jsonb_build_object(
            'sub', :'owner', 'role', 'authenticated', 'session_id', 'e0000000-0000-4000-8000-000000000001'
        ),
        'd0000000-0000-4000-8000-000000000001'
    ),
    '42501', null, 'a signed-in user cannot call it with someone else''s claims'
);
select tests.authenticate_as_anon();
select throws_ok(
    $$select * from private.authorize_generation_for('{}', 'd0000000-0000-4000-8000-000000000001')$$,
    '42501', null, 'anon cannot call it'
);
select tests.authenticate_as_service_role();
select throws_ok(
    $$select * from private.authorize_generation_for('{}', 'd0000000-0000-4000-8000-000000000001')$$,
    '42501', null, 'service_role cannot call it'
);

select * from finish();
rollback;
