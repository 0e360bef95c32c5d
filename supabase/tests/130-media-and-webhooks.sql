-- Stored media and outbound webhooks: who reads a generation's media, its webhook and its
-- delivery log; who may set a webhook; the signing secret that no API role can read; the
-- delivery log written once per event by the status trigger; the status announcement.
begin;
select plan(27);

select tests.create_user('mowner@velro.test') as mowner \gset
select tests.create_user('mviewer@velro.test') as mviewer \gset
select tests.create_user('mstranger@velro.test') as mstranger \gset

insert into public.teams (id, name, owner_id) values
('c0000000-0000-4000-8000-000000000003', 'Media', :'mowner');
insert into public.team_members (team_id, user_id, role) values
('c0000000-0000-4000-8000-000000000003', :'mowner', 'owner'),
('c0000000-0000-4000-8000-000000000003', :'mviewer', 'viewer');

select tests.authenticate_as(:'mowner');
select id as gen from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'a media fox', 'media-1') \gset
select public.share_generation(:'gen', 'c0000000-0000-4000-8000-000000000003', 'viewer');

-- media ---------------------------------------------------------------------------------

select tests.authenticate_as_service_role();
select lives_ok(
    format(
        $$select public.record_generation_media(%L, 0, %L, 'image/png', 1234, 640, 480, 'https://fal.media/x.png')$$,
        :'gen', :'gen' || '/0.png'
    ),
    'the service role records a stored output'
);
select lives_ok(
    format(
        $$select public.record_generation_media(%L, 0, %L, 'image/png', 2345, 640, 480, 'https://fal.media/x.png')$$,
        :'gen', :'gen' || '/0.png'
    ),
    'recording the same output again replaces it'
);
select tests.clear_authentication();
select is((select count(*)::int from public.generation_media where generation_id = :'gen'), 1, 'one row per output');

select tests.authenticate_as(:'mowner');
select is(
    (select size_bytes from public.generation_media where generation_id = :'gen'), 2345::bigint,
    'the owner reads the media'
);
select tests.authenticate_as(:'mviewer');
select is(
    (select count(*)::int from public.generation_media where generation_id = :'gen'), 1,
    'a member of a team the generation is shared with reads its media'
);
select tests.authenticate_as(:'mstranger');
select is_empty('select 1 from public.generation_media', 'a stranger reads no media');
select throws_ok(
    format(
        $$select public.record_generation_media(%L, 1, %L, 'image/png', 1, 1, 1, 'https://fal.media/y.png')$$,
        :'gen', :'gen' || '/1.png'
    ),
    '42501', 'permission denied for function record_generation_media', 'users cannot record media'
);
select tests.authenticate_as(:'mowner');
select throws_ok(
    format($$insert into public.generation_media values (%L, 5, 'x', 'image/png', 1, 1, 1, 'u')$$, :'gen'),
    '42501', 'permission denied for table generation_media', 'not even the owner writes media rows'
);

-- webhook secrets ---------------------------------------------------------------------------

select tests.authenticate_as(:'mowner');
select is((select configured from public.webhook_secret_info()), false, 'no secret before one is made');
select matches(
    (select secret from public.rotate_webhook_secret()), '^whsec_[A-Za-z0-9+/]{43}=$',
    'a secret is whsec_ and 32 bytes of base64'
);
select is((select configured from public.webhook_secret_info()), true, 'then it is configured');
select throws_ok(
    'select secret from private.webhook_secrets', '42501', 'permission denied for table webhook_secrets',
    'the owner cannot read the stored secret again'
);
select tests.authenticate_as_service_role();
select throws_ok(
    'select secret from private.webhook_secrets', '42501', 'permission denied for table webhook_secrets',
    'nor can the service role'
);
select tests.authenticate_as_anon();
select throws_ok(
    'select * from public.rotate_webhook_secret()', '42501', 'permission denied for function rotate_webhook_secret',
    'anon has no secret to rotate'
);

-- webhooks and the delivery log ---------------------------------------------------------

select tests.authenticate_as(:'mviewer');
select throws_ok(
    format($$select public.set_generation_webhook(%L, 'https://hooks.example.com/x')$$, :'gen'),
    'PT404', 'generation not found', 'a reader who does not own it cannot set its webhook'
);
select tests.authenticate_as(:'mowner');
select throws_ok(
    format($$select public.set_generation_webhook(%L, 'ftp://hooks.example.com/x')$$, :'gen'),
    'PT400', 'webhook_url must be an http(s) URL of at most 2048 characters', 'only http(s) URLs'
);
select throws_ok(
    format($$select public.set_generation_webhook(%L, 'https://hooks.example.com/x', array['output'])$$, :'gen'),
    'PT400', 'webhook_events_filter must name start and/or completed', 'only known events'
);
select is(
    (
        select events
        from public.set_generation_webhook(:'gen', 'https://hooks.example.com/x', array['completed', 'start', 'start'])
    ),
    array['completed', 'start'], 'the owner sets a webhook for start and completed'
);

select tests.authenticate_as_service_role();
select public.record_generation_progress(:'gen', 'queued', 'req-media-1');
select public.record_generation_progress(:'gen', 'processing');
select public.record_generation_progress(:'gen', 'completed', null, '{"images": []}');
select public.record_generation_progress(:'gen', 'failed');
select tests.clear_authentication();
select results_eq(
    format($$select event, status from public.webhook_deliveries where generation_id = %L order by event$$, :'gen'),
    $$values ('completed', 'pending'), ('start', 'pending')$$,
    'each event is logged once: start on leaving pending, completed on the end; a late change adds none'
);

select tests.authenticate_as(:'mowner');
select is(
    (select count(*)::int from public.webhook_deliveries where generation_id = :'gen'), 2,
    'the owner reads the delivery log'
);
select is(
    (select count(*)::int from public.generation_webhooks where generation_id = :'gen'), 1,
    'and the webhook'
);
select tests.authenticate_as(:'mviewer');
select is_empty('select 1 from public.webhook_deliveries', 'a reader who does not own it reads no deliveries');
select is_empty('select 1 from public.generation_webhooks', 'nor the webhook URL');
select tests.authenticate_as(:'mowner');
select throws_ok(
    format($$update public.webhook_deliveries set status = 'delivered' where generation_id = %L$$, :'gen'),
    '42501', 'permission denied for table webhook_deliveries', 'the owner cannot rewrite the log'
);

select tests.clear_authentication();
update public.profiles set status = 'suspended' where id = :'mowner';
select tests.authenticate_as(:'mowner');
select is_empty('select 1 from public.webhook_deliveries', 'a suspended owner reads no deliveries');
select is_empty('select 1 from public.generation_webhooks', 'nor their webhooks');

-- status announcements ------------------------------------------------------------------

select tests.clear_authentication();
select is(
    (
        select count(*)::int from pg_catalog.pg_trigger
        where tgname = 'generations_announce_status' and tgrelid = 'public.generations'::regclass
    ),
    1, 'a status change is announced on channel generation_status'
);

select * from finish();
rollback;
