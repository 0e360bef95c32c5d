-- What a cached answer depends on comes from SQL with the answer: the tags of an
-- authorization answer (also of a denial: the project is found without RLS), and a
-- session's liveness with its tags and whether its end is announced. Who may call each.
begin;
select plan(21);

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
('e0000000-0000-4000-8000-000000000002', :'owner', now(), now(), 'aal1');
update auth.sessions set not_after = now() + interval '1 hour'
where id = 'e0000000-0000-4000-8000-000000000002';

-- authorization tags ------------------------------------------------------------------------

select is(
    private.generation_answer_tags('d0000000-0000-4000-8000-000000000001', :'owner'),
    array[
        'user:' || :'owner', 'generation:d0000000-0000-4000-8000-000000000001',
        'project:c0000000-0000-4000-8000-000000000001'
    ],
    'a grant depends on the user, the generation and its project'
);

select tests.authenticate_as(:'stranger');
select is(
    (public.authorize_generation('d0000000-0000-4000-8000-000000000001') ->> 'access_granted')::boolean,
    false,
    'the stranger is denied'
);
select is_empty(
    $$select 1 from public.projects where id = 'c0000000-0000-4000-8000-000000000001'$$,
    'and RLS hides that project from the stranger'
);
select tests.clear_authentication();
select is(
    private.generation_answer_tags('d0000000-0000-4000-8000-000000000001', :'stranger'),
    array[
        'user:' || :'stranger', 'generation:d0000000-0000-4000-8000-000000000001',
        'project:c0000000-0000-4000-8000-000000000001'
    ],
    'a denial depends on the project too, found although the stranger cannot read it'
);
select is(
    private.generation_answer_tags('d0000000-0000-4000-8000-00000000ffff', :'stranger'),
    array['user:' || :'stranger', 'generation:d0000000-0000-4000-8000-00000000ffff'],
    'an unknown generation depends on the user and the id only'
);

-- only the app's own role asks, in the statement that decides (authorize_generation_for)
select tests.authenticate_as(:'stranger');
select throws_ok(
    format(
        'select private.generation_answer_tags(%L, %L)',
        'd0000000-0000-4000-8000-000000000001', :'stranger'
    ),
    '42501', null, 'a signed-in user cannot ask for tags'
);
select tests.authenticate_as_anon();
select throws_ok(
    format(
        'select private.generation_answer_tags(%L, %L)',
        'd0000000-0000-4000-8000-000000000001', :'stranger'
    ),
    '42501', null, 'anon cannot ask for tags'
);
select tests.authenticate_as_service_role();
select throws_ok(
    format(
        'select private.generation_answer_tags(%L, %L)',
        'd0000000-0000-4000-8000-000000000001', :'stranger'
    ),
    '42501', null, 'service_role cannot ask for tags'
);

-- session liveness --------------------------------------------------------------------------

-- the one rule of a live session, which the app's transaction preamble reads too
select tests.authenticate_as(:'owner');
select throws_ok(
    'select 1 from private.live_sessions', '42501', null, 'a signed-in user cannot list sessions'
);
select tests.authenticate_as_anon();
select throws_ok('select 1 from private.live_sessions', '42501', null, 'anon cannot list sessions');
select tests.authenticate_as_service_role();
select throws_ok(
    'select 1 from private.live_sessions', '42501', null, 'service_role cannot list sessions'
);

select tests.authenticate_as(:'owner');
select throws_ok(
    format('select * from private.session_liveness(%L, %L)', 'e0000000-0000-4000-8000-000000000001', :'owner'),
    '42501', null, 'a signed-in user cannot probe sessions'
);
select tests.authenticate_as_service_role();
select throws_ok(
    format('select * from private.session_liveness(%L, %L)', 'e0000000-0000-4000-8000-000000000001', :'owner'),
    '42501', null, 'service_role cannot probe sessions'
);

select tests.clear_authentication();
select is(
    (
        select row(live, tags, announced, seconds_left)::text
        from private.session_liveness('e0000000-0000-4000-8000-000000000001', :'owner')
    ),
    row(
        true, array['session:e0000000-0000-4000-8000-000000000001', 'user:' || :'owner'], true, null::double precision
    )::text,
    'a live session, its tags, announced by the trigger, with no end of its own'
);
select ok(
    (
        select seconds_left between 3500 and 3600
        from private.session_liveness('e0000000-0000-4000-8000-000000000002', :'owner')
    ),
    'a session with not_after says how many seconds it has left'
);
select is(
    (select live from private.session_liveness('e0000000-0000-4000-8000-000000000001', :'stranger')),
    false,
    'a session is live only for its own user'
);

delete from auth.sessions where id = 'e0000000-0000-4000-8000-000000000001';
select is(
    (select live from private.session_liveness('e0000000-0000-4000-8000-000000000001', :'owner')),
    false,
    'a deleted session is not live'
);

drop trigger sessions_invalidate on auth.sessions;
select is(
    (select announced from private.session_liveness('e0000000-0000-4000-8000-000000000002', :'owner')),
    false,
    'without the trigger on auth.sessions the answer says its end is not announced'
);

select is(
    (select live from private.session_liveness('e0000000-0000-4000-8000-000000000002', :'owner')),
    true,
    'a session before its not_after is live'
);
update auth.sessions set not_after = now() - interval '1 second'
where id = 'e0000000-0000-4000-8000-000000000002';
select is(
    (select live from private.session_liveness('e0000000-0000-4000-8000-000000000002', :'owner')),
    false,
    'a session past its not_after is not live'
);
select is_empty(
    $$select 1 from private.live_sessions where id = 'e0000000-0000-4000-8000-000000000002'$$,
    'and the view the preamble reads agrees'
);

select * from finish();
rollback;
