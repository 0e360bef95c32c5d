-- Demo data for local development: two users, a team, a shared project and two finished
-- generations. Sign in as demo@velro.dev / velro-demo-password (or viewer@velro.dev).
-- Idempotent: re-running it changes nothing.

insert into auth.users (
    id, aud, role, email, encrypted_password, email_confirmed_at,
    raw_app_meta_data, raw_user_meta_data, created_at, updated_at
) values
(
    'd0000000-0000-4000-8000-000000000001', 'authenticated', 'authenticated', 'demo@velro.dev',
    '$2b$10$81OUZa9LjiQVMZYIy/qemugG0nomdBVF6Vn9Kof2k.scifLNB/pv6', now(),
    '{"provider": "email", "providers": ["email"]}', '{"display_name": "Demo Owner"}', now(), now()
),
(
    'd0000000-0000-4000-8000-000000000002', 'authenticated', 'authenticated', 'viewer@velro.dev',
    '$2b$10$81OUZa9LjiQVMZYIy/qemugG0nomdBVF6Vn9Kof2k.scifLNB/pv6', now(),
    '{"provider": "email", "providers": ["email"]}', '{"display_name": "Demo Viewer"}', now(), now()
)
on conflict (id) do nothing;

insert into public.teams (id, name, owner_id) values
('d0000000-0000-4000-8000-0000000000a1', 'Demo Studio', 'd0000000-0000-4000-8000-000000000001')
on conflict (id) do nothing;

insert into public.team_members (team_id, user_id, role) values
('d0000000-0000-4000-8000-0000000000a1', 'd0000000-0000-4000-8000-000000000001', 'owner'),
('d0000000-0000-4000-8000-0000000000a1', 'd0000000-0000-4000-8000-000000000002', 'viewer')
on conflict (team_id, user_id) do nothing;

insert into public.projects (id, owner_id, name, description, visibility) values
(
    'd0000000-0000-4000-8000-0000000000b1', 'd0000000-0000-4000-8000-000000000001',
    'Launch campaign', 'Key visuals and teaser clips', 'team'
)
on conflict (id) do nothing;

insert into public.project_teams (project_id, team_id, access_level, linked_by) values
(
    'd0000000-0000-4000-8000-0000000000b1', 'd0000000-0000-4000-8000-0000000000a1', 'editor',
    'd0000000-0000-4000-8000-000000000001'
)
on conflict (project_id, team_id) do nothing;

insert into public.generations (
    id, owner_id, project_id, model_id, prompt, parameters, status, outputs, cost,
    idempotency_key, completed_at
) values
(
    'd0000000-0000-4000-8000-0000000000c1', 'd0000000-0000-4000-8000-000000000001',
    'd0000000-0000-4000-8000-0000000000b1', 'fal-ai/flux-pro/v1.1-ultra',
    'a neon city at dusk, cinematic', '{"aspect_ratio": "16:9"}', 'completed',
    '[{"type": "image", "content_type": "image/jpeg", "width": 2752, "height": 1536}]', 50,
    'seed-1', now()
),
(
    'd0000000-0000-4000-8000-0000000000c2', 'd0000000-0000-4000-8000-000000000001',
    'd0000000-0000-4000-8000-0000000000b1', 'fal-ai/veo3',
    'a paper boat on a rainy street, slow motion', '{"aspect_ratio": "16:9"}', 'completed',
    '[{"type": "video", "content_type": "video/mp4", "duration_seconds": 8}]', 500,
    'seed-2', now()
)
on conflict (id) do nothing;
