from __future__ import annotations

import json
from dataclasses import fields

import pytest

from pool import ConfigError, PoolSettings, redact, register_secrets
from tools.settings import Settings


def test_defaults_match_the_documented_ones() -> None:
    settings = Settings.from_env({"OPENAI_API_KEY": "sk-abcdefgh12345"})
    assert settings.llm_model == "gpt-4o-mini"
    assert (settings.http_max_connections, settings.http_max_per_host) == (100, 30)
    assert (settings.http_keepalive_s, settings.http_dns_cache_s) == (60.0, 300)
    assert settings.memory_backend == "sqlite"
    assert settings.user_id == "console-user"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HTTP_MAX_CONNECTIONS": "many"}, "HTTP_MAX_CONNECTIONS must be a number"),
        ({"HTTP_MAX_PER_HOST": "0"}, "HTTP_MAX_PER_HOST must be greater than 0"),
        ({"MEMORY_BACKEND": "mongo"}, "MEMORY_BACKEND must be one of sqlite, postgres, supabase"),
        ({"MEMORY_BACKEND": "postgres"}, "MEMORY_BACKEND=postgres needs DATABASE_URL"),
        ({"MEMORY_BACKEND": "supabase"}, "needs SUPABASE_URL"),
        (
            {
                "MEMORY_BACKEND": "supabase",
                "SUPABASE_URL": "https://x.co",
                "SUPABASE_ANON_KEY": "a",
            },
            "SUPABASE_ANON_KEY with SUPABASE_JWT_SECRET",
        ),
        ({"HTTP_MAX_PER_HOST": "200"}, "cannot be larger than HTTP_MAX_CONNECTIONS"),
        ({"DRAIN_TIMEOUT_S": "inf"}, "DRAIN_TIMEOUT_S must be a finite number"),
        ({"CALL_DEADLINE_S": "nan"}, "CALL_DEADLINE_S must be a finite number"),
        ({"PROMETHEUS_PORT": "99999"}, "PROMETHEUS_PORT must be a port number from 1 to 65535"),
        ({"LIVEKIT_TARGET_LOAD": "1.5"}, "LIVEKIT_TARGET_LOAD must be a fraction between 0 and 1"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR"),
        ({"REDIS_SENTINELS": "127.0.0.1"}, "REDIS_SENTINELS must be host:port"),
        ({"REDIS_SENTINELS": "127.0.0.1:26379"}, "REDIS_SENTINELS and REDIS_SENTINEL_MASTER"),
        ({"DATABASE_READ_URL": "postgresql://r:5432/db"}, "needs MEMORY_BACKEND=postgres"),
        (
            {"MEMORY_BACKEND": "postgres", "DATABASE_URL": "postgresql://u:pw@h1:5432,h2:x/db"},
            "DATABASE_URL does not parse",
        ),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_no_endpoint_is_refused_with_the_variable_and_env_file_named() -> None:
    with pytest.raises(ConfigError, match=r"OPENAI_API_KEY .*\.env"):
        Settings.from_env({}).require_openai()
    Settings.from_env({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}).require_openai()


def test_the_anon_key_is_used_with_per_user_tokens_when_the_jwt_secret_is_set() -> None:
    env = {"MEMORY_BACKEND": "supabase", "SUPABASE_URL": "https://x.co"}
    env |= {"SUPABASE_ANON_KEY": "anon", "SUPABASE_SERVICE_ROLE_KEY": "service"}
    assert Settings.from_env(env).supabase_key == "service"
    signed = Settings.from_env(env | {"SUPABASE_JWT_SECRET": "jwt-secret-4e1a9f7c"})
    assert (signed.supabase_key, signed.supabase_jwt_secret) == ("anon", "jwt-secret-4e1a9f7c")
    assert "jwt-secret-4e1a9f7c" in signed.secrets
    assert "jwt-secret-4e1a9f7c" not in repr(signed) + str(signed.public())


def test_secrets_never_show_in_repr_public_view_or_redacted_text() -> None:
    settings = Settings.from_env(
        {
            "OPENAI_API_KEY": "sk-live-abcdef123456",
            "DATABASE_URL": "postgresql://app:pa55word-xyz@db:5432/mem",
            "SUPABASE_URL": "https://x.supabase.co",
            "SUPABASE_SERVICE_ROLE_KEY": "service-role-key-0987654321",
        }
    )
    shown = repr(settings) + str(settings.public())
    for secret in ("sk-live-abcdef123456", "pa55word-xyz", "service-role-key-0987654321"):
        assert secret not in shown
        assert secret not in redact(f"error talking to {secret}")
    assert redact("redis://:topsecretpw@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact("Authorization: Bearer abcdefghijklmnop") == "Authorization: Bearer ***"


def test_a_short_secret_is_masked_where_it_stands_without_eating_ordinary_text() -> None:
    register_secrets(["postgresql://app:k9z@db:5432/mem", "Qx4"])
    assert (
        redact('FATAL: password "k9z" rejected for app') == 'FATAL: password "***" rejected for app'
    )
    assert redact("key=Qx4; retrying") == "key=***; retrying"
    # the same letters inside a longer word are that word, not the secret
    assert redact("k9zone Qx42") == "k9zone Qx42"


def test_several_database_hosts_and_sentinels_are_read() -> None:
    settings = Settings.from_env(
        {
            "MEMORY_BACKEND": "postgres",
            "DATABASE_URL": "postgresql://app:pw-7c1d@db1:5432,db2:5433/mem",
            "DATABASE_READ_URL": "postgresql://app:pw-7c1d@db2:5433/mem",
            "REDIS_SENTINELS": "s1:26379, s2:26380",
            "REDIS_SENTINEL_MASTER": "cache",
            "REDIS_PASSWORD": "redis-pw-93ab",
        }
    )
    assert settings.redis_sentinels == (("s1", 26379), ("s2", 26380))
    shown = repr(settings) + str(settings.public())
    assert "pw-7c1d" not in shown and "redis-pw-93ab" not in shown
    assert {"redis-pw-93ab", settings.database_read_url} <= set(settings.secrets)


def test_every_default_is_written_once_on_its_field() -> None:
    """An empty environment gives exactly the fields' own defaults."""
    assert Settings.from_env({}) == Settings()
    assert PoolSettings.from_env({}) == PoolSettings()


def test_the_pool_reads_only_its_own_settings() -> None:
    pool_fields = {f.name for f in fields(PoolSettings)}
    assert {"breaker_reset_s", "openai_read_timeout_s", "cache_ttl_s"} <= pool_fields
    assert not {"memory_backend", "agent_name", "llm_providers", "ack_after_s"} & pool_fields
    # the agent's settings are the pool's plus its own, one environment read for both
    settings = Settings.from_env({"BREAKER_RESET_S": "7", "AGENT_NAME": "ada"})
    assert (settings.breaker_reset_s, settings.agent_name) == (7.0, "ada")


def chain(*entries: dict[str, object]) -> str:
    return json.dumps(list(entries))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        # the default endpoint's name, for another endpoint: it would get the default client
        (
            {"LLM_PROVIDERS": chain({"name": "openai", "base_url": "https://other.example/v1"})},
            r"LLM_PROVIDERS \(openai\): the name openai is the OPENAI_\* endpoint's",
        ),
        ({"STT_PROVIDERS": chain({"name": "http"})}, "one of the pool's own resources"),
        ({"TTS_PROVIDERS": chain({"name": "sqlite"})}, "one of the pool's own resources"),
        ({"LLM_PROVIDERS": chain({"name": "a.llm"})}, "must be letters, digits"),
        (
            {
                "LLM_PROVIDERS": chain({"name": "groq", "base_url": "https://a.example/v1"}),
                "STT_PROVIDERS": chain({"name": "groq", "base_url": "https://b.example/v1"}),
            },
            r"STT_PROVIDERS \(groq\): LLM_PROVIDERS has a provider of that name",
        ),
        ({"LLM_PROVIDERS": chain({"name": "a", "base_url": 5})}, "base_url must be a string"),
        ({"LLM_PROVIDERS": chain({"name": "a", "base_url": "ftp://x"})}, "base_url must look"),
        ({"LLM_PROVIDERS": chain({"name": "a", "model": ["gpt"]})}, "model must be a string"),
        ({"LLM_PROVIDERS": chain({"name": "a", "max_connections": 0})}, "at least 1"),
        ({"LLM_PROVIDERS": chain({"name": "a", "keepalive_s": "long"})}, "keepalive_s must be"),
    ],
)
def test_a_provider_entry_that_would_be_misread_is_refused_in_one_line(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        Settings.from_env(env)
    assert "\n" not in str(error.value)


def test_one_provider_in_several_chains_is_one_endpoint() -> None:
    groq = {"name": "groq", "base_url": "https://api.groq.example/openai/v1"}
    settings = Settings.from_env(
        {
            "LLM_PROVIDERS": chain({**groq, "model": "llama"}),
            "STT_PROVIDERS": chain({**groq, "model": "whisper"}),
            "TTS_PROVIDERS": chain({"name": "openai"}),  # the OPENAI_* endpoint by name
        }
    )
    assert settings.llm_providers[0].endpoint() == settings.stt_providers[0].endpoint()
