"""Search: the evolutionary engine, mutation operators, LLM backends, campaigns, run store, CLI."""
