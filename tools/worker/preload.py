"""Imported once in livekit's forkserver, before it forks the job processes: what each of
them would otherwise import and build itself, a CPU spike per process while a burst of
rooms starts on a small machine."""

from __future__ import annotations

import contextlib

from pool import warm_tls
from tools.settings import Settings

from .process import build_first_use, import_ahead, silence_detector

import_ahead()
build_first_use()
warm_tls()
# a setting that does not parse is the job's to report, with its message: a warm-up must not
# stop the worker
with contextlib.suppress(Exception):
    silence_detector(Settings.from_env().vad_silence_s)
