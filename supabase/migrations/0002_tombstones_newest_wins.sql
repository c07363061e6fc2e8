-- A delete is one tombstone write, whoever sends it (asyncpg, PostgREST, a replayed outbox):
-- the tombstone keeps its newest stamp, and writing it removes what it covers. Safe to run
-- more than once.

-- a replayed older delete must not lower the stamp, or an older save could come back
create or replace function public.memory_tombstones_keep_newest() returns trigger
language plpgsql as $$
begin
    if new.deleted_at <= old.deleted_at then
        return null;
    end if;
    return new;
end
$$;

drop trigger if exists memory_tombstones_keep_newest on public.memory_tombstones;
create trigger memory_tombstones_keep_newest
    before update on public.memory_tombstones
    for each row execute function public.memory_tombstones_keep_newest();

-- runs as the caller, so row-level security still scopes it to the caller's own rows
create or replace function public.memory_tombstones_forget() returns trigger
language plpgsql as $$
begin
    delete from public.memories m
    where m.user_id = new.user_id and m.category = new.category and m.key = new.key
      and m.updated_at <= new.deleted_at;
    return null;
end
$$;

drop trigger if exists memory_tombstones_forget on public.memory_tombstones;
create trigger memory_tombstones_forget
    after insert or update on public.memory_tombstones
    for each row execute function public.memory_tombstones_forget();
