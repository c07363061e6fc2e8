"""What the agent does through the pool: its settings, long-term memory, AI providers, the
conversation and the worker around it, and the pool as the LLM sees it."""
