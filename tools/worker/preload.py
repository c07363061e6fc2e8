"""Imported once in livekit's forkserver, before it forks the job processes: what each of
them would otherwise import and build itself, a CPU spike per process while a burst of
rooms starts on a small machine."""

from __future__ import annotations

from pool import warm_tls

from .process import build_first_use, import_ahead

import_ahead()
build_first_use()
warm_tls()
