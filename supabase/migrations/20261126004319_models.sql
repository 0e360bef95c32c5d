-- The FAL.ai model catalog with each model's credit cost and parameter schema.

-- types ---------------------------------------------------------------------------------

create type public.model_kind as enum ('image', 'video');

-- tables --------------------------------------------------------------------------------

create table public.models (
    id text primary key check (id ~ '^[a-z0-9][a-z0-9._/-]*$'),
    name text not null,
    kind public.model_kind not null,
    credit_cost integer not null check (credit_cost > 0),
    enabled boolean not null default true,
    parameter_schema jsonb not null default '{"type": "object", "properties": {}}'::jsonb
    check (coalesce(jsonb_typeof(parameter_schema -> 'properties'), 'missing') = 'object'),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

comment on table public.models is
'FAL model id, kind, credit cost and the JSON-schema subset its parameters must follow.';

-- grants --------------------------------------------------------------------------------

grant select on public.models to anon, authenticated;
grant select, insert, update, delete on public.models to service_role;

create trigger models_touch_updated_at
before update on public.models
for each row execute function private.touch_updated_at();

-- RLS -----------------------------------------------------------------------------------

alter table public.models enable row level security;

-- policies ------------------------------------------------------------------------------

create policy "anyone can read enabled models"
on public.models for select to anon, authenticated
using (enabled);

-- data ----------------------------------------------------------------------------------

insert into public.models (id, name, kind, credit_cost, parameter_schema) values
(
    'fal-ai/flux-pro/v1.1-ultra', 'FLUX1.1 [pro] ultra', 'image', 50,
    '{"type": "object", "properties": {
        "aspect_ratio": {"type": "string", "enum": ["21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"]},
        "num_images": {"type": "integer", "minimum": 1, "maximum": 4},
        "seed": {"type": "integer", "minimum": 0},
        "raw": {"type": "boolean"},
        "output_format": {"type": "string", "enum": ["jpeg", "png"]}}}'
),
(
    'fal-ai/flux-pro/kontext/max', 'FLUX.1 Kontext [max]', 'image', 60,
    '{"type": "object", "properties": {
        "image_url": {"type": "string"},
        "aspect_ratio": {"type": "string", "enum": ["21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"]},
        "num_images": {"type": "integer", "minimum": 1, "maximum": 4},
        "guidance_scale": {"type": "number", "minimum": 1, "maximum": 20},
        "seed": {"type": "integer", "minimum": 0}}}'
),
(
    'fal-ai/imagen4/preview/ultra', 'Imagen 4 Ultra', 'image', 45,
    '{"type": "object", "properties": {
        "aspect_ratio": {"type": "string", "enum": ["1:1", "16:9", "9:16", "3:4", "4:3"]},
        "negative_prompt": {"type": "string"},
        "num_images": {"type": "integer", "minimum": 1, "maximum": 4},
        "seed": {"type": "integer", "minimum": 0}}}'
),
(
    'fal-ai/veo3', 'Veo 3', 'video', 500,
    '{"type": "object", "properties": {
        "aspect_ratio": {"type": "string", "enum": ["16:9", "9:16", "1:1"]},
        "duration": {"type": "string", "enum": ["8s"]},
        "negative_prompt": {"type": "string"},
        "generate_audio": {"type": "boolean"},
        "seed": {"type": "integer", "minimum": 0}}}'
),
(
    'fal-ai/minimax/hailuo-02/pro/text-to-video', 'MiniMax Hailuo 02 Pro', 'video', 400,
    '{"type": "object", "properties": {
        "prompt_optimizer": {"type": "boolean"}}}'
),
(
    'fal-ai/kling-video/v2.1/master/text-to-video', 'Kling 2.1 Master', 'video', 350,
    '{"type": "object", "properties": {
        "duration": {"type": "string", "enum": ["5", "10"]},
        "aspect_ratio": {"type": "string", "enum": ["16:9", "9:16", "1:1"]},
        "negative_prompt": {"type": "string"},
        "cfg_scale": {"type": "number", "minimum": 0, "maximum": 1}}}'
),
(
    'fal-ai/wan-pro/text-to-video', 'Wan 2.1 Pro', 'video', 300,
    '{"type": "object", "properties": {
        "seed": {"type": "integer", "minimum": 0},
        "enable_safety_checker": {"type": "boolean"}}}'
);
