-- Generations and their credits: create_generation (charge in the same transaction, never
-- below zero, idempotent per key), reading and changing through RLS, cancel_generation,
-- record_generation_progress and refund_generation (a refund happens at most once).
begin;
select plan(93);

select * from tests.create_world(p_sue_role => 'editor') \gset
insert into public.team_members (team_id, user_id, role)
values ('a0000000-0000-4000-8000-000000000001', :'powner', 'viewer');

-- the project, linked to Alpha at admin level, so each team role counts as itself (owner as admin)
insert into public.projects (id, owner_id, name) values ('c0000000-0000-4000-8000-000000000003', :'powner', 'Launch');
insert into public.project_teams (project_id, team_id, access_level)
values ('c0000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-000000000001', 'admin');
update public.projects set visibility = 'team' where id = 'c0000000-0000-4000-8000-000000000003';

-- creating and charging ----------------------------------------------------------------------

select tests.authenticate_as(:'powner');
select id as gen1 from public.create_generation(
    'fal-ai/flux-pro/v1.1-ultra', '  a red fox  ', 'key-1', 'c0000000-0000-4000-8000-000000000003',
    '{"num_images": 1, "aspect_ratio": "16:9"}', 'Fox'
) \gset
select results_eq(
    format(
        $$select owner_id, project_id, model_id, prompt, status::text, cost, title
        from public.generations where id = %L$$, :'gen1'
    ),
    format(
        $$values (%L::uuid, 'c0000000-0000-4000-8000-000000000003'::uuid, 'fal-ai/flux-pro/v1.1-ultra',
        'a red fox', 'pending', 50, 'Fox')$$, :'powner'
    ),
    'create_generation stores a pending generation at the model''s cost for one image'
);
select results_eq(
    'select credits from public.profiles where id = auth.uid()', 'values (50)',
    'and charges for it in the same transaction'
);
select results_eq(
    $$select kind::text, amount, balance_after, generation_id from public.credit_ledger where kind = 'charge'$$,
    format($$values ('charge', -50, 50, %L::uuid)$$, :'gen1'),
    'the charge is in the ledger with the balance after it and the generation'
);
select results_eq(
    $$select id from public.create_generation(
        'fal-ai/flux-pro/v1.1-ultra', '  a red fox  ', 'key-1', 'c0000000-0000-4000-8000-000000000003',
        '{"aspect_ratio": "16:9", "num_images": 1}', 'Fox'
    )$$,
    format('values (%L::uuid)', :'gen1'),
    'a replay of the same request with the same idempotency key answers with the first generation'
);
select throws_ok(
    $$select id from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'something else', 'key-1')$$,
    'PT409',
    'this Idempotency-Key was already used with a different request: '
    'send the same request to retry it, or use a new key',
    'a replay of the key with a different body is a conflict'
);
select results_eq(
    $$select count(*)::integer, min(p.credits) from public.credit_ledger as l, public.profiles as p
    where l.kind = 'charge' and p.id = auth.uid()$$,
    'values (1, 50)',
    'and charges nothing again'
);
select throws_ok(
    $$select public.create_generation('fal-ai/veo3', 'a long film', 'key-2')$$,
    'PT402',
    'not enough credits: this needs 504 and the balance is 50',
    'a charge above the balance is refused (402): 8 s of Veo 3'
);
select is_empty(
    $$select id from public.generations where idempotency_key = 'key-2'$$,
    'the refused generation was not stored'
);
select results_eq(
    $$select p.credits, (select count(*)::integer from public.credit_ledger)
    from public.profiles as p where p.id = auth.uid()$$,
    'values (50, 2)',
    'and nothing was charged (balance 50, signup grant and one charge)'
);

-- who may create in the project
select tests.authenticate_as(:'teditor');
select id as gen2 from public.create_generation(
    'fal-ai/flux-pro/v1.1-ultra', 'a blue whale', 'key-1', 'c0000000-0000-4000-8000-000000000003'
) \gset
select isnt(:'gen2'::uuid, :'gen1'::uuid, 'idempotency keys are per user: the editor''s key-1 is a new generation');
select tests.authenticate_as(:'tviewer');
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', 'k', 'c0000000-0000-4000-8000-000000000003')$$,
    'PT403', 'this needs the editor role on the project', 'a team viewer cannot create in the project'
);
select tests.authenticate_as(:'other');
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', 'k', 'c0000000-0000-4000-8000-000000000003')$$,
    'PT404', 'project not found', 'a member of another team cannot (404)'
);
select tests.authenticate_as(:'sue');
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', 'k', 'c0000000-0000-4000-8000-000000000003')$$,
    'PT403', 'this account is suspended', 'a suspended user cannot create'
);
select tests.authenticate_as_anon();
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', 'k')$$,
    '42501', 'permission denied for function create_generation', 'anon cannot create'
);
select tests.authenticate_as(:'stranger');
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', 'k', 'c0000000-0000-4000-8000-000000000003')$$,
    'PT404', 'project not found', 'a stranger cannot create in the project (404)'
);
select id as gen3 from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'a green owl', 'key-1') \gset
select ok(:'gen3' is not null, 'a stranger creates a generation outside any project');

-- validation: nothing is stored or charged
select throws_ok(
    $$select public.create_generation('fal-ai/nope', 'x', 'k')$$,
    'PT400', 'model fal-ai/nope is not available; GET /api/v1/models lists them', 'an unknown model is refused'
);
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', '   ', 'k')$$,
    'PT400', 'prompt must be 1 to 4000 characters', 'a blank prompt is refused'
);
select throws_ok(
    format($$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', %L, 'k')$$, repeat('x', 4001)),
    'PT400', 'prompt must be 1 to 4000 characters', 'a prompt over 4000 characters is refused'
);
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', '')$$,
    'PT400', 'idempotency_key must be 1 to 255 characters', 'an empty idempotency key is refused'
);
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', 'k', null, '{"steps": 30}')$$,
    'PT400',
    'parameters.steps is not a parameter of this model; allowed: aspect_ratio, num_images, output_format, raw, seed',
    'an unknown parameter is refused, naming the allowed ones'
);
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', 'k', null, '{"num_images": 5}')$$,
    'PT400', 'parameters.num_images must be at most 4', 'a parameter above its maximum is refused'
);
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', 'k', null, '{"seed": "abc"}')$$,
    'PT400', 'parameters.seed must be of type integer', 'a parameter of the wrong type is refused'
);
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', 'k', null, '{"output_format": "gif"}')$$,
    'PT400', 'parameters.output_format must be one of ["jpeg", "png"]', 'a parameter outside its enum is refused'
);
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', 'k', null, '[1, 2]')$$,
    'PT400', 'parameters must be a JSON object', 'parameters that are not an object are refused'
);
select tests.clear_authentication();
update public.models set enabled = false where id = 'fal-ai/wan-pro/text-to-video';
select tests.authenticate_as(:'stranger');
select throws_ok(
    $$select public.create_generation('fal-ai/wan-pro/text-to-video', 'x', 'k')$$,
    'PT400', 'model fal-ai/wan-pro/text-to-video is not available; GET /api/v1/models lists them',
    'a disabled model is refused'
);
select throws_ok(
    format(
        $$insert into public.generations (owner_id, model_id, prompt, cost, idempotency_key)
        values (%L, 'fal-ai/veo3', 'free video', 0, 'k')$$, :'stranger'
    ),
    '42501', 'permission denied for table generations', 'nobody inserts a generation around the charge'
);
select tests.clear_authentication();
select results_eq(
    $$select count(*)::integer, (select count(*)::integer from public.credit_ledger where kind = 'charge')
    from public.generations$$,
    'values (3, 3)',
    'after all the refusals: three generations, three charges'
);

-- reading --------------------------------------------------------------------------------------

select tests.authenticate_as(:'powner');
select set_eq(
    'select id from public.generations', format('values (%L::uuid), (%L::uuid)', :'gen1', :'gen2'),
    'the project owner reads the project''s generations'
);
select tests.authenticate_as(:'towner');
select set_eq(
    'select id from public.generations', format('values (%L::uuid), (%L::uuid)', :'gen1', :'gen2'),
    'the team owner reads them'
);
select tests.authenticate_as(:'tadmin');
select set_eq(
    'select id from public.generations', format('values (%L::uuid), (%L::uuid)', :'gen1', :'gen2'),
    'a team admin reads them'
);
select tests.authenticate_as(:'teditor');
select set_eq(
    'select id from public.generations', format('values (%L::uuid), (%L::uuid)', :'gen1', :'gen2'),
    'a team editor reads them'
);
select tests.authenticate_as(:'tviewer');
select set_eq(
    'select id from public.generations', format('values (%L::uuid), (%L::uuid)', :'gen1', :'gen2'),
    'a team viewer reads them'
);
select tests.authenticate_as(:'other');
select is_empty('select id from public.generations', 'a member of another team reads none');
select tests.authenticate_as(:'stranger');
select results_eq(
    'select id from public.generations', format('values (%L::uuid)', :'gen3'),
    'a stranger reads only his own'
);
select tests.authenticate_as(:'sue');
select is_empty('select id from public.generations', 'a suspended member reads none');
select tests.authenticate_as_anon();
select throws_ok(
    'select id from public.generations', '42501', 'permission denied for table generations', 'anon reads none'
);

-- updating and deleting ---------------------------------------------------------------------------

select tests.authenticate_as(:'teditor');
select results_eq(
    format($$update public.generations set title = 'Fox, edited' where id = %L returning title$$, :'gen1'),
    $$values ('Fox, edited')$$,
    'a team editor retitles a generation in the project'
);
select throws_ok(
    $$update public.generations set status = 'completed'$$, '42501', 'permission denied for table generations',
    'nobody sets the status directly'
);
select throws_ok(
    'update public.generations set cost = 0', '42501', 'permission denied for table generations',
    'nobody changes the cost'
);
select throws_ok(
    format('update public.generations set owner_id = %L', :'teditor'),
    '42501', 'permission denied for table generations',
    'nobody takes over a generation'
);
select throws_ok(
    $$update public.generations set prompt = 'other'$$, '42501', 'permission denied for table generations',
    'nobody rewrites the prompt after the charge'
);
select is_empty(
    format('delete from public.generations where id = %L returning id', :'gen1'), 'an editor cannot delete'
);
select tests.authenticate_as(:'tviewer');
select is_empty(
    format($$update public.generations set title = 'viewer' where id = %L returning id$$, :'gen1'),
    'a viewer cannot retitle'
);
select is_empty(format('delete from public.generations where id = %L returning id', :'gen1'), 'nor delete');
select tests.authenticate_as(:'stranger');
select is_empty(
    format($$update public.generations set title = 'mine' where id = %L returning id$$, :'gen1'),
    'a stranger cannot retitle'
);
select is_empty(format('delete from public.generations where id = %L returning id', :'gen1'), 'nor delete');
select tests.authenticate_as(:'sue');
select is_empty($$update public.generations set title = 'sue' returning id$$, 'a suspended member cannot retitle');
select tests.clear_authentication();
select results_eq(
    format('select title from public.generations where id = %L', :'gen1'), $$values ('Fox, edited')$$,
    'only the editor''s retitle went through'
);

-- cancelling and refunds -------------------------------------------------------------------------

select tests.authenticate_as(:'tviewer');
select throws_ok(
    format('select public.cancel_generation(%L)', :'gen1'),
    'PT403', 'this needs the editor role on the generation', 'a viewer cannot cancel (403: she can read it)'
);
select tests.authenticate_as(:'other');
select throws_ok(
    format('select public.cancel_generation(%L)', :'gen1'),
    'PT404', 'generation not found', 'a member of another team cannot cancel (404)'
);
select tests.authenticate_as(:'stranger');
select throws_ok(
    format('select public.cancel_generation(%L)', :'gen1'),
    'PT404', 'generation not found', 'a stranger cannot cancel (404)'
);
select tests.authenticate_as(:'sue');
select throws_ok(
    format('select public.cancel_generation(%L)', :'gen1'),
    'PT403', 'this account is suspended', 'a suspended member cannot cancel'
);
select tests.authenticate_as_anon();
select throws_ok(
    format('select public.cancel_generation(%L)', :'gen1'),
    '42501', 'permission denied for function cancel_generation', 'anon cannot cancel'
);
select tests.clear_authentication();
select results_eq(
    format(
        $$select status::text, (select credits from public.profiles where id = %L)
        from public.generations where id = %L$$,
        :'powner', :'gen1'
    ),
    $$values ('pending', 50)$$,
    'the refused cancels changed nothing'
);

select tests.authenticate_as(:'teditor');
select results_eq(
    format('select status::text from public.cancel_generation(%L)', :'gen1'), $$values ('cancelled')$$,
    'a team editor cancels a pending generation'
);
select throws_ok(
    format('select public.cancel_generation(%L)', :'gen1'),
    'PT409', 'only a pending or queued generation can be cancelled', 'cancelling twice is a conflict'
);
select tests.clear_authentication();
select results_eq(
    format(
        $$select l.kind::text, l.amount, l.balance_after, l.user_id, l.refund_of = c.id
        from public.credit_ledger as l
        join public.credit_ledger as c on c.generation_id = l.generation_id and c.kind = 'charge'
        where l.generation_id = %L and l.kind = 'refund'$$, :'gen1'
    ),
    format($$values ('refund', 50, 100, %L::uuid, true)$$, :'powner'),
    'the owner (not the canceller) is refunded once, linked to the charge'
);

-- the service role moves generations forward; users cannot
select tests.authenticate_as(:'powner');
select throws_ok(
    format($$select public.record_generation_progress(%L, 'completed')$$, :'gen2'),
    '42501', 'permission denied for function record_generation_progress', 'a user cannot complete a generation'
);
select throws_ok(
    format('select public.refund_generation(%L)', :'gen2'),
    '42501', 'permission denied for function refund_generation', 'a user cannot refund a generation'
);
select tests.authenticate_as_anon();
select throws_ok(
    format('select public.refund_generation(%L)', :'gen2'),
    '42501', 'permission denied for function refund_generation', 'anon cannot refund'
);

select tests.authenticate_as_service_role();
select results_eq(
    format(
        $$select status::text, fal_request_id from public.record_generation_progress(%L, 'queued', 'req-2')$$,
        :'gen2'
    ),
    $$values ('queued', 'req-2')$$,
    'the service role records the FAL request id'
);
select results_eq(
    format($$select status::text, fal_request_id from public.record_generation_progress(%L, 'processing')$$, :'gen2'),
    $$values ('processing', 'req-2')$$,
    'progress keeps the request id'
);
select results_eq(
    format(
        $$select status::text, error, completed_at is not null
        from public.record_generation_progress(%L, 'failed', null, null, 'boom')$$,
        :'gen2'
    ),
    $$values ('failed', 'boom', true)$$,
    'a failure is recorded'
);
select refund.id as refund_id from public.credit_ledger as refund
where refund.generation_id = :'gen2' and refund.kind = 'refund' \gset
select results_eq(
    format('select id, amount, balance_after from public.refund_generation(%L)', :'gen2'),
    format('values (%L::uuid, 50, 100)', :'refund_id'),
    'refund_generation after the failure refund answers with the same refund line'
);
select results_eq(
    format('select id from public.refund_generation(%L)', :'gen2'),
    format('values (%L::uuid)', :'refund_id'),
    'and again'
);
select results_eq(
    format($$select status::text from public.record_generation_progress(%L, 'failed')$$, :'gen2'),
    $$values ('failed')$$,
    'a duplicate failure webhook changes nothing'
);
select results_eq(
    format(
        $$select status::text from public.record_generation_progress(%L, 'completed', null, '[{"url": "x"}]')$$,
        :'gen2'
    ),
    $$values ('failed')$$,
    'a late completion does not revive a failed generation'
);
select results_eq(
    format(
        $$select count(*)::integer, sum(amount)::integer from public.credit_ledger
        where generation_id = %L and kind = 'refund'$$, :'gen2'
    ),
    'values (1, 50)',
    'the failed generation was refunded exactly once'
);
select results_eq(
    format('select credits from public.profiles where id = %L', :'teditor'), 'values (100)',
    'the editor has her credits back, once'
);
select throws_ok(
    format($$select public.record_generation_progress(%L, 'completed')$$, gen_random_uuid()),
    'PT404', 'generation not found', 'progress on an unknown generation is 404'
);
select throws_ok(
    format('select public.refund_generation(%L)', gen_random_uuid()),
    'PT404', 'generation not found', 'a refund of an unknown generation is 404'
);

-- a completed generation is final and keeps its charge
select results_eq(
    format(
        $$select status::text, outputs, completed_at is not null
        from public.record_generation_progress(%L, 'completed', 'req-3', '[{"url": "https://cdn/x.png"}]')$$,
        :'gen3'
    ),
    $$values ('completed', '[{"url": "https://cdn/x.png"}]'::jsonb, true)$$,
    'the service role completes a generation with its outputs'
);
select tests.authenticate_as(:'stranger');
select throws_ok(
    format('select public.cancel_generation(%L)', :'gen3'),
    'PT409', 'only a pending or queued generation can be cancelled', 'a completed generation cannot be cancelled'
);
select is_empty(
    format($$select id from public.credit_ledger where generation_id = %L and kind = 'refund'$$, :'gen3'),
    'and is not refunded'
);
select tests.authenticate_as_service_role();
select throws_ok(
    format('select public.refund_generation(%L)', :'gen3'),
    'PT409', 'this generation is completed: only failed or cancelled generations are refunded',
    'not even by the service role'
);
select tests.authenticate_as(:'stranger');

-- never below zero: the stranger has 50 left
select lives_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'last one', 'key-4')$$,
    'a charge of exactly the balance goes through'
);
select results_eq('select credits from public.profiles where id = auth.uid()', 'values (0)', 'leaving zero');
select throws_ok(
    $$select public.create_generation('fal-ai/imagen4/preview/ultra', 'one more', 'key-5')$$,
    'PT402', 'not enough credits: this needs 45 and the balance is 0', 'at zero every charge is refused'
);
select results_eq(
    $$select credits, (select count(*)::integer from public.generations) from public.profiles where id = auth.uid()$$,
    'values (0, 2)',
    'the balance stays at zero and no generation was stored'
);

-- deleting, by those who may ----------------------------------------------------------------------

select tests.authenticate_as(:'tadmin');
select lives_ok(
    format('delete from public.generations where id = %L', :'gen2'), 'a project admin deletes a generation'
);
select tests.authenticate_as(:'stranger');
select lives_ok(
    format('delete from public.generations where id = %L', :'gen3'), 'a creator deletes her own generation'
);
select tests.clear_authentication();
select is_empty(
    format('select id from public.generations where id in (%L, %L)', :'gen2', :'gen3'),
    'both are gone'
);
select results_eq(
    format('select count(*)::integer from public.credit_ledger where generation_id in (%L, %L)', :'gen2', :'gen3'),
    'values (3)',
    'their ledger lines stay: the ledger is history'
);

-- revocation ----------------------------------------------------------------------------------------

select tests.authenticate_as(:'towner');
select lives_ok(
    format($$select public.remove_member('a0000000-0000-4000-8000-000000000001', %L)$$, :'tviewer'),
    'the team owner removes the viewer'
);
select tests.authenticate_as(:'tviewer');
select is_empty('select id from public.generations', 'the removed viewer reads no generation in the next statement');
select tests.authenticate_as(:'teditor');
select id as gen5 from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'mine', 'key-5') \gset
select tests.authenticate_as(:'towner');
select lives_ok(
    format($$select public.remove_member('a0000000-0000-4000-8000-000000000001', %L)$$, :'teditor'),
    'the team owner removes the editor'
);
select tests.authenticate_as(:'teditor');
select results_eq(
    'select id from public.generations', format('values (%L::uuid)', :'gen5'),
    'the removed editor keeps only what she created herself'
);
select tests.clear_authentication();
update public.profiles set status = 'suspended' where id = :'teditor';
select tests.authenticate_as(:'teditor');
select is_empty('select id from public.generations', 'suspended, she reads not even her own');
select throws_ok(
    format('select public.cancel_generation(%L)', :'gen5'),
    'PT403', 'this account is suspended', 'nor cancels them'
);
select tests.authenticate_as(:'powner');
select results_eq(
    'select id from public.generations', format('values (%L::uuid)', :'gen1'),
    'the project owner reads the project''s remaining generation'
);

-- audit -----------------------------------------------------------------------------------------------

select tests.clear_authentication();
select set_eq(
    format(
        $$select event from private.audit_events where subject_id = %L or details ->> 'generation_id' = %L$$, :'gen1',
        :'gen1'
    ),
    $$values ('generation.cancelled')$$,
    'the cancel is audited'
);
select ok(
    (select count(*) from private.audit_events where event = 'credits.refund') = 2
    and (select count(*) from private.audit_events where event = 'credits.charge') = 5,
    'every charge and refund is audited'
);

select * from finish();
rollback;
