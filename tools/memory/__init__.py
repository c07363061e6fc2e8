"""Long-term memory: the model and its validation, the service the agent calls, the durable
outbox, the stores (SQLite, PostgreSQL, Supabase) and the tools as the LLM sees them."""

from __future__ import annotations

from .cli import run as run_memory_command
from .leftovers import store_left_writes
from .model import (
    CATEGORIES,
    MAX_BATCH,
    MAX_KEY_CHARS,
    MAX_PER_CATEGORY,
    MAX_USER_ID_CHARS,
    MAX_VALUE_BYTES,
    Category,
    InvalidMemory,
    Memory,
    MemoryServiceError,
    MemoryStore,
    Write,
    check_category,
    check_key,
    check_user,
    check_value,
    delete_write,
    fit_value,
    newest_per_key,
    save_write,
)
from .outbox import MAX_FAILURES, Outbox
from .outbox_file import OUTBOX_WRITES, OutboxReport
from .service import MemoryService, OpResult, batch_memory_operations, open_memory_service
from .stores import apply_migration, memory_spec, memory_store
from .tools import (
    MEMORY_BLOCK_END,
    MEMORY_BLOCK_START,
    PROMPT_TOKENS,
    forget_memory,
    memory_block,
    recall_memory,
    recall_within_budget,
    save_memory,
)

__all__ = [
    "CATEGORIES",
    "MAX_BATCH",
    "MAX_FAILURES",
    "MAX_KEY_CHARS",
    "MAX_PER_CATEGORY",
    "MAX_USER_ID_CHARS",
    "MAX_VALUE_BYTES",
    "MEMORY_BLOCK_END",
    "MEMORY_BLOCK_START",
    "OUTBOX_WRITES",
    "PROMPT_TOKENS",
    "Category",
    "InvalidMemory",
    "Memory",
    "MemoryService",
    "MemoryServiceError",
    "MemoryStore",
    "OpResult",
    "Outbox",
    "OutboxReport",
    "Write",
    "apply_migration",
    "batch_memory_operations",
    "check_category",
    "check_key",
    "check_user",
    "check_value",
    "delete_write",
    "fit_value",
    "forget_memory",
    "memory_block",
    "memory_spec",
    "memory_store",
    "newest_per_key",
    "open_memory_service",
    "recall_memory",
    "recall_within_budget",
    "run_memory_command",
    "save_memory",
    "save_write",
    "store_left_writes",
]
