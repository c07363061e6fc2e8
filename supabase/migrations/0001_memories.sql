-- Long-term memories, one row per (user_id, category, key). Serves plain PostgreSQL and
-- Supabase alike; safe to run more than once.

create table if not exists public.memories (
    user_id    text        not null check (char_length(user_id) between 1 and 256),
    category   text        not null check (category in ('FACT', 'PREFERENCE', 'CONTEXT')),
    key        text        not null check (char_length(key) between 1 and 128),
    value      text        not null check (octet_length(value) <= 4096),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (user_id, category, key)
);

-- recall: a user's memories, newest first
create index if not exists memories_user_updated on public.memories (user_id, updated_at desc);

-- a delete leaves a stamp, so an older save replayed later cannot bring the memory back
create table if not exists public.memory_tombstones (
    user_id    text        not null,
    category   text        not null,
    key        text        not null,
    deleted_at timestamptz not null,
    primary key (user_id, category, key)
);

-- Writes are stamped when they were asked for (updated_at). Whoever writes (asyncpg, PostgREST,
-- a replayed outbox), a write older than what is stored, or than a delete, changes nothing.
create or replace function public.memories_keep_newest() returns trigger
language plpgsql as $$
begin
    if exists (
        select 1 from public.memory_tombstones t
        where t.user_id = new.user_id and t.category = new.category and t.key = new.key
          and t.deleted_at > new.updated_at
    ) then
        return null;
    end if;
    if tg_op = 'UPDATE' then
        if new.updated_at < old.updated_at then
            return null;
        end if;
        new.created_at := old.created_at;
    end if;
    return new;
end
$$;

drop trigger if exists memories_keep_newest on public.memories;
create trigger memories_keep_newest
    before insert or update on public.memories
    for each row execute function public.memories_keep_newest();

-- Row-level security: a signed-in user (Supabase's JWT "sub") reads and writes only their own
-- rows. The agent connects as the table owner or with the service-role key, which bypass RLS
-- and scope every query by user_id themselves.
alter table public.memories enable row level security;
alter table public.memory_tombstones enable row level security;

drop policy if exists memories_owner on public.memories;
create policy memories_owner on public.memories for all
    using (user_id = nullif(current_setting('request.jwt.claims', true), '')::json ->> 'sub')
    with check (user_id = nullif(current_setting('request.jwt.claims', true), '')::json ->> 'sub');

drop policy if exists memory_tombstones_owner on public.memory_tombstones;
create policy memory_tombstones_owner on public.memory_tombstones for all
    using (user_id = nullif(current_setting('request.jwt.claims', true), '')::json ->> 'sub')
    with check (user_id = nullif(current_setting('request.jwt.claims', true), '')::json ->> 'sub');
