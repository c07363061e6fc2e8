"""Personal greetings: one LLM call per user, cached across sessions, fresh when facts change."""

from __future__ import annotations

from pool import get_pool
from testbed.openai_server import OpenAIServer, Rule, system_text
from tools.conversation import GENERIC_GREETING, forget_greeting, greeting_for
from tools.memory import open_memory_service
from tools.settings import Settings


def greeting_requests(server: OpenAIServer) -> int:
    return sum("returning user" in system_text(b) for b in server.bodies("/chat/completions"))


async def visit(settings: Settings, user_id: str) -> str:
    """One session's start, in its own pool: an empty in-process cache, like a new process."""
    pool = get_pool(settings)
    memory = await open_memory_service(pool, settings)
    memory.on_change(lambda user, categories: forget_greeting(pool, user, categories))
    try:
        return await greeting_for(
            pool, user_id, await memory.recall(user_id), model=settings.llm_model
        )
    finally:
        await memory.aclose()
        await pool.aclose()


async def test_a_new_user_gets_a_generic_greeting_without_an_llm_call(
    settings: Settings, server: OpenAIServer
) -> None:
    assert await visit(settings, "stranger") == GENERIC_GREETING
    assert server.count("/chat/completions") == 0


async def test_a_repeat_visit_within_the_ttl_makes_no_llm_call(
    settings: Settings, server: OpenAIServer
) -> None:
    server.script(
        Rule(text="Welcome back, Ada! Still fond of tea?", when=lambda b: "Ada" in str(b))
    )
    pool = get_pool(settings)
    memory = await open_memory_service(pool, settings)
    await memory.save("ada", "FACT", "name", "Ada")
    await memory.save("ada", "PREFERENCE", "drink", "tea")
    await memory.aclose()
    await pool.aclose()

    first = await visit(settings, "ada")
    second = await visit(settings, "ada")

    assert first == second == "Welcome back, Ada! Still fond of tea?"
    assert greeting_requests(server) == 1
    request = server.bodies("/chat/completions")[0]
    assert "tea" in str(request["messages"]) and request["model"] == settings.llm_model


async def test_saving_a_fact_makes_the_next_greeting_fresh_but_a_summary_does_not(
    settings: Settings, server: OpenAIServer
) -> None:
    server.script(
        Rule(text="Hello Ada.", when=lambda b: "Lovelace" not in str(b)),
        Rule(text="Hello Ada Lovelace.", when=lambda b: "Lovelace" in str(b)),
    )
    pool = get_pool(settings)
    memory = await open_memory_service(pool, settings)
    memory.on_change(lambda user, categories: forget_greeting(pool, user, categories))
    try:
        await memory.save("ada", "FACT", "name", "Ada")
        assert (
            await greeting_for(pool, "ada", await memory.recall("ada"), model=settings.llm_model)
            == "Hello Ada."
        )

        await memory.save("ada", "CONTEXT", "conversation_summary", "We talked about tea.")
        assert (
            await greeting_for(pool, "ada", await memory.recall("ada"), model=settings.llm_model)
            == "Hello Ada."
        )
        assert greeting_requests(server) == 1

        await memory.save("ada", "FACT", "name", "Ada Lovelace")
        assert (
            await greeting_for(pool, "ada", await memory.recall("ada"), model=settings.llm_model)
            == "Hello Ada Lovelace."
        )
        assert greeting_requests(server) == 2
    finally:
        await memory.aclose()
        await pool.aclose()
