"""What the agent does through the pool: memory, greetings, parallel calls, pool tools."""
