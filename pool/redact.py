"""Keep secrets out of logs, stats and tool output.

Redaction happens where text leaves the process (log records, stats, tool results),
so a secret embedded in an exception message from a driver is caught too.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

MASK = "***"

# scheme://user:password@host: the password part, whatever the scheme
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s/]+)@")
# bearer tokens and OpenAI-style keys that reach a message without going through settings
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_OPENAI_KEY = re.compile(r"\bsk-[A-Za-z0-9_-]{8,}")
# JWTs (Supabase anon and service-role keys are JWTs)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")

_lock = threading.Lock()
_known: set[str] = set()
# a secret this short is masked where it stands alone (between non-alphanumerics), so that
# a four-digit password hides in "password=1234" without eating every 1234 inside a number
_SHORT = 6
_short: dict[str, re.Pattern[str]] = {}


def register_secrets(secrets: Iterable[str | None]) -> None:
    """Remember secret values so that they are masked wherever they appear.

    For a URL, its password is remembered on its own too: drivers quote it bare.
    """
    values: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        values.add(secret)
        if "://" in secret:
            try:
                password = urlsplit(secret).password
            except ValueError:
                password = None
            if password:
                values.add(unquote(password))
    with _lock:
        _known.update(v for v in values if len(v) >= _SHORT)
        for value in values:
            if len(value) < _SHORT:
                _short[value] = re.compile(rf"(?<![^\W_]){re.escape(value)}(?![^\W_])")


def redact(text: str) -> str:
    """Return ``text`` with every known secret, URL password and token masked."""
    with _lock:
        known = sorted(_known, key=len, reverse=True)
        short = sorted(_short.items(), key=lambda item: len(item[0]), reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    for secret, alone in short:
        if secret in text:
            text = alone.sub(MASK, text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}@", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{MASK}", text)
    text = _OPENAI_KEY.sub(MASK, text)
    return _JWT.sub(MASK, text)


class _RedactingRecordFactory:
    def __init__(self, inner: logging._LogRecordFactory) -> None:  # type: ignore[name-defined]
        self.inner = inner

    def __call__(self, *args: object, **kwargs: object) -> logging.LogRecord:
        record: logging.LogRecord = self.inner(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's to report
            return record
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[0] is not None:
            # format the traceback now, redacted; handlers reuse exc_text as it is
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record


def install_log_redaction() -> None:
    """Redact every log record created in this process, whatever handler shows it.

    A record factory rather than a handler filter, because livekit-agents installs
    its own handlers (console, job-process IPC) after we start.
    """
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingRecordFactory):
        logging.setLogRecordFactory(_RedactingRecordFactory(factory))
