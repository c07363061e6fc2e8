-- A user keeps at most 500 memories per category: a new one beyond that evicts the least
-- recently confirmed (the oldest updated_at), whoever writes it (asyncpg, PostgREST, a
-- replayed outbox). An update of an existing key does not grow the count. Safe to run more
-- than once; the number is tools/memory/model.py's MAX_PER_CATEGORY.

create index if not exists memories_user_category_updated
    on public.memories (user_id, category, updated_at desc);

-- runs as the caller, so row-level security still scopes it to the caller's own rows
create or replace function public.memories_keep_cap() returns trigger
language plpgsql as $$
begin
    delete from public.memories m
    where m.user_id = new.user_id and m.category = new.category
      and m.key in (
          select key from public.memories
          where user_id = new.user_id and category = new.category
          order by updated_at desc, key
          offset 500
      );
    return null;
end
$$;

drop trigger if exists memories_keep_cap on public.memories;
create trigger memories_keep_cap
    after insert on public.memories
    for each row execute function public.memories_keep_cap();
