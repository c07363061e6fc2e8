"""Google service-account credentials, given as JSON, as base64 of it or as a file path."""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

from pool import ConfigError, register_secrets


def service_account_json(variable: str, value: str) -> str:
    """The Google service-account JSON ``variable`` holds: the JSON itself (a byte-order
    mark allowed), base64 of it, or the path of a file of it. Every form of it is a secret
    from here on; an error names the variable, never what it holds."""
    register_secrets([value, value.strip()])
    text = value.strip().lstrip("\ufeff")
    if not text.startswith("{"):
        text = _base64_json(text) or _file_text(variable, text)
    try:
        info = json.loads(text)
    except ValueError:
        raise ConfigError(f"{variable} does not hold valid service-account JSON.") from None
    if not isinstance(info, dict) or not all(
        isinstance(info.get(name), str) and info[name]
        for name in ("type", "client_email", "private_key")
    ):
        raise ConfigError(
            f"{variable} holds JSON that is not a Google service-account key "
            "(type, client_email and private_key)."
        )
    register_secrets([text, info["private_key"], info.get("private_key_id")])
    return text


def _base64_json(text: str) -> str | None:
    compact = "".join(text.split())
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            decoded = decode(compact + "=" * (-len(compact) % 4)).decode("utf-8-sig").strip()
        except (binascii.Error, ValueError):
            continue
        if decoded.startswith("{"):
            return decoded
    return None


def _file_text(variable: str, path: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8-sig").strip()
    except (OSError, ValueError):
        raise ConfigError(
            f"{variable} is neither service-account JSON, base64 of it, nor the path of a "
            "readable file."
        ) from None
