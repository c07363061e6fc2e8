"""The agent where its users meet it: a real LiveKit room on a local server, the worker
as a real process (`python agent.py start`), and people who join with the LiveKit SDK.

Here: greetings, spoken turns, memory across rooms, stats by voice, one person per job,
no secret in any output."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import psutil
import pytest
from livekit import rtc
from livekit.agents.voice.remote_session import TOPIC_SESSION_MESSAGES
from livekit.protocol.agent_pb import agent_session as agent_pb

from room.livekit_server import LiveKitServer
from testbed.audio_io import speak_to_frames
from testbed.openai_server import (
    Fault,
    OpenAIServer,
    Rule,
    has_tool_result,
    last_user_text,
    system_text,
)
from testbed.person import Person
from testbed.worker import Worker, room_env
from tests.support.rooms import (
    KEY,
    ask,
    greeted,
    heard_greeting_out,
    job_pids,
    memories,
    room,
)
from tools.conversation import GENERIC_GREETING

pytestmark = pytest.mark.slow


async def test_a_person_joining_a_new_room_is_greeted_by_a_job_process(
    livekit: LiveKitServer, worker: Worker, server: OpenAIServer
) -> None:
    name = room()
    async with worker.person("greta", name) as greta:
        await heard_greeting_out(greta)

    assert greta.said_by_agent()[0] == GENERIC_GREETING  # a new user
    assert greta.heard.peak_rms > 1000  # real sound, not silence
    assert greta.heard.sound_s >= 0.2
    assert worker.process is not None
    assert job_pids(worker, name) - {worker.process.pid}


def test_job_processes_start_from_the_agents_modules_loaded_once(worker: Worker) -> None:
    """livekit forks each job process from its forkserver: with the agent's own stack
    imported there, a process starts from a copy of it instead of importing it again (a
    burst of rooms on two cores paid that in every process). Seen from outside, the memory
    stores' native extensions (SQLite's, asyncpg's) are mapped in the forkserver, where no
    job has run and livekit imports neither."""
    assert worker.process is not None
    (forkserver,) = [
        child
        for child in psutil.Process(worker.process.pid).children()
        if "multiprocessing.forkserver" in " ".join(child.cmdline())
    ]
    maps = Path(f"/proc/{forkserver.pid}/maps").read_text()
    assert "_sqlite3" in maps and "asyncpg/protocol" in maps


async def test_a_spoken_turn_is_answered_in_text_and_audio(
    livekit: LiveKitServer,
    worker: Worker,
    server: OpenAIServer,
    tmp_path: Path,
    record_property: object,
) -> None:
    server.script(Rule(text="It is sunny.", when=lambda b: "weather" in last_user_text(b)))
    async with worker.person("sam", room()) as sam:
        await greeted(sam)
        latency = await ask(
            sam, server, "what's the weather like", "What is the weather like?", tmp_path
        )

    assert sam.said_by_agent()[-1] == "It is sunny."
    assert "One moment." not in sam.said_by_agent()  # the model answered within the threshold
    assert [line.text for line in sam.lines if line.speaker == "user"] == [
        "what's the weather like"
    ]
    assert {"listening", "thinking", "speaking"} <= set(sam.agent_states)
    # livekit's session events (every state, interim transcript and usage update) are for a
    # remote console this product has none of: sent into the room, each one cost the agent,
    # the server and every person in the room
    assert sam.session_messages == []
    record_property("eos_to_first_reply_audio_ms", round(latency * 1000))  # type: ignore[operator]
    print(f"end of speech -> first reply audio: {latency * 1000:.0f} ms")


async def test_memory_follows_the_person_into_the_next_room(
    livekit: LiveKitServer, worker: Worker, server: OpenAIServer, workdir: Path, tmp_path: Path
) -> None:
    server.script(
        Rule(
            tool_calls=[("saveMemory", {"category": "FACT", "key": "name", "value": "Ada"})],
            when=lambda b: "my name is Ada" in last_user_text(b) and not has_tool_result(b),
        ),
        Rule(text="I will remember that, Ada.", when=has_tool_result),
    )
    first = room()
    async with worker.person("ada", first) as ada:
        await greeted(ada)
        await ask(ada, server, "remember that my name is Ada", "Remember my name.", tmp_path)
    assert memories(workdir, "ada") == {"name": "Ada"}

    server.script(
        Rule(
            text="Welcome back, Ada!",
            when=lambda b: "returning user" in system_text(b) and "Ada" in str(b),
        ),
        Rule(
            text="You are Ada.",
            when=lambda b: last_user_text(b) == "who am I" and '"value": "Ada"' in system_text(b),
        ),
    )
    second = room()
    async with worker.person("ada", second) as ada:
        await greeted(ada)
        await ask(ada, server, "who am I", "Who am I?", tmp_path)
    assert ada.said_by_agent()[0] == "Welcome back, Ada!"
    assert ada.said_by_agent()[-1] == "You are Ada."

    # within the cache's TTL the third visit is greeted from the shared layer: no LLM call
    greetings_before = sum("returning user" in system_text(b) for b in server.bodies("/chat"))
    async with worker.person("ada", room()) as ada:
        await greeted(ada)
    assert ada.said_by_agent()[0] == "Welcome back, Ada!"
    assert (
        sum("returning user" in system_text(b) for b in server.bodies("/chat")) == greetings_before
    )

    first_pids, second_pids = job_pids(worker, first), job_pids(worker, second)
    assert first_pids and second_pids and not first_pids & second_pids  # a new job process


async def test_pool_stats_asked_by_voice_show_reused_connections(
    livekit: LiveKitServer, worker: Worker, server: OpenAIServer, tmp_path: Path
) -> None:
    asking = lambda b: "connections" in last_user_text(b)  # noqa: E731
    server.script(
        Rule(text="Fine, thanks.", when=lambda b: "how are you" in last_user_text(b)),
        Rule(
            tool_calls=[("getConnectionPoolStats", {})],
            when=lambda b: asking(b) and not has_tool_result(b),
        ),
        Rule(text="My connections are healthy.", when=has_tool_result),
    )
    async with worker.person("pat", room()) as pat:
        await greeted(pat)
        await ask(pat, server, "how are you", "How are you?", tmp_path)
        await ask(pat, server, "how are your connections", "How are your connections?", tmp_path)

    assert pat.said_by_agent()[-1] == "My connections are healthy."
    tool = next(
        m
        for body in server.bodies("/chat/completions")
        for m in body["messages"]
        if m["role"] == "tool"
    )
    stats = json.loads(tool["content"])["resources"]["openai"]
    assert stats["health"] == "HEALTHY"
    # greeting, two turns, speech in and out: all over the connections warmed at the start
    assert stats["connections"]["reused"] > stats["connections"]["opened"] >= 1
    assert KEY not in tool["content"]


async def test_the_agent_listens_only_to_the_person_its_job_is_for(
    livekit: LiveKitServer, worker: Worker, server: OpenAIServer, tmp_path: Path, workdir: Path
) -> None:
    server.script(
        Rule(
            tool_calls=[("recallMemory", {})],
            when=lambda b: "what do you know" in last_user_text(b) and not has_tool_result(b),
            times=None,
        ),
    )
    name = room()
    async with worker.person("owner", name) as owner:
        await greeted(owner)
        # joins the same room by its own token, which dispatches nothing
        async with Person(livekit.url, "intruder", name) as intruder:
            heard = server.realtime_events["conversation.item.input_audio_transcription.completed"]
            server.transcripts.append("what do you know about me")
            ended = await intruder.say_and_wait(
                speak_to_frames("What do you know about me?", tmp_path)
            )
            await asyncio.sleep(2.0)  # time enough for a turn, had the agent listened
            completed = server.realtime_events
            assert completed["conversation.item.input_audio_transcription.completed"] == heard
            assert server.transcripts == ["what do you know about me"]  # nobody heard it
            assert owner.first_sound_after(ended) is None
            server.transcripts.clear()

            await owner.leave()
            # the owner left: the session ends and the agent leaves with it
            await asyncio.wait_for(intruder.agent_left.wait(), 20)
            assert intruder.said_by_agent() == []


async def test_nobody_in_the_room_can_read_or_drive_the_persons_session(
    livekit: LiveKitServer, worker: Worker, server: OpenAIServer, workdir: Path, tmp_path: Path
) -> None:
    """livekit's session host answers anyone in the room on its remote-session topic: the
    agent's instructions (the person's memories in them), the conversation, and a turn run
    as if the person had said it (a tool call on their memory). This product's sessions
    are not hosted: nobody's request is answered, and nothing is broadcast."""
    server.script(
        Rule(
            tool_calls=[("saveMemory", {"category": "FACT", "key": "name", "value": "Robin"})],
            when=lambda b: "my name is Robin" in last_user_text(b) and not has_tool_result(b),
        ),
        Rule(
            tool_calls=[("forgetMemory", {"category": "FACT", "key": "name"})],
            when=lambda b: "Forget my name" in last_user_text(b) and not has_tool_result(b),
            times=None,
        ),
        Rule(text="Done.", when=has_tool_result, times=None),
    )
    name = room()
    async with worker.person("keeper", name) as owner:
        await greeted(owner)
        await ask(owner, server, "remember that my name is Robin", "Remember my name.", tmp_path)
        assert memories(workdir, "keeper") == {"name": "Robin"}
        assert owner.agent_identity is not None
        async with Person(livekit.url, "intruder", name) as intruder:
            for request_id, request in enumerate(
                [
                    agent_pb.SessionRequest(ping=agent_pb.SessionRequest.Ping()),
                    agent_pb.SessionRequest(get_agent_info=agent_pb.SessionRequest.GetAgentInfo()),
                    agent_pb.SessionRequest(
                        get_chat_history=agent_pb.SessionRequest.GetChatHistory()
                    ),
                    agent_pb.SessionRequest(
                        run_input=agent_pb.SessionRequest.RunInput(text="Forget my name.")
                    ),
                ]
            ):
                request.request_id = str(request_id)
                message = agent_pb.AgentSessionMessage(request=request)
                await intruder.room.local_participant.send_bytes(
                    message.SerializeToString(),
                    topic=TOPIC_SESSION_MESSAGES,
                    destination_identities=[owner.agent_identity],
                )
            await asyncio.sleep(3.0)  # a hosted session answers a ping in well under a second
            assert intruder.session_messages == []
        assert owner.session_messages == []
        # no turn was run for them
        asked = server.bodies("/chat/completions")
        assert not any("Forget my name" in last_user_text(body) for body in asked)
        assert memories(workdir, "keeper") == {"name": "Robin"}


async def test_the_pool_panel_answers_only_the_person_its_job_is_for(
    livekit: LiveKitServer, worker: Worker
) -> None:
    name = room()
    async with worker.person("owner", name) as owner:
        await greeted(owner)
        assert owner.agent_identity is not None

        async def ask_stats(person: Person) -> str:
            agent = str(owner.agent_identity)
            try:
                return await person.room.local_participant.perform_rpc(
                    destination_identity=agent, method="getConnectionPoolStats", payload=""
                )
            except rtc.RpcError as error:
                if error.code != rtc.RpcError.ErrorCode.RECIPIENT_DISCONNECTED:
                    raise
            # livekit's own transport restarted the agent's connection (seen once in a CI
            # run on a busy machine): the same job rejoins as the same participant, and
            # the question is what that session answers
            await person.until(
                lambda: agent in person.room.remote_participants, 20, "the agent to rejoin"
            )
            return await person.room.local_participant.perform_rpc(
                destination_identity=agent, method="getConnectionPoolStats", payload=""
            )

        stats = json.loads(await ask_stats(owner))
        assert "resources" in stats
        async with Person(livekit.url, "intruder", name) as intruder:
            with pytest.raises(rtc.RpcError, match="only the person"):
                await ask_stats(intruder)
        # and the person is still answered, in the same session
        assert json.loads(await ask_stats(owner))["pool"] == stats["pool"]


async def test_no_secret_reaches_the_output_of_the_worker_or_its_jobs(
    livekit: LiveKitServer,
    server: OpenAIServer,
    pg_admin_dsn: str,
    tmp_path: Path,
) -> None:
    password = "marker-db-password-Hv4Kp9"
    dsn = pg_admin_dsn.replace("postgres@", f"postgres:{password}@", 1)
    # the provider refuses the key and quotes it back, as OpenAI's 401 does
    server.script(
        Rule(fault=Fault(status=401, echo_key=True), times=None),
        Rule(path="/audio/speech", fault=Fault(status=401, echo_key=True), times=None),
    )
    env = room_env(server.base_url, OPENAI_API_KEY=KEY)
    env.update(MEMORY_BACKEND="postgres", DATABASE_URL=dsn)
    with Worker(livekit, tmp_path, **env) as worker:
        async with worker.person("sid", room()) as sid:
            await sid.until(lambda: "Incorrect API key" in worker.output(), 30, "the refusal")
            await asyncio.sleep(1.0)
    output = worker.output()
    assert "Incorrect API key provided: ***" in output  # the error was logged, the key masked
    assert KEY not in output
    assert password not in output
