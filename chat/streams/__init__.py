"""The agent's replies as Server-Sent Events: produced into capped Redis streams by a task in the
web process that accepted the POST, read from any web process (docs/ai.md)."""
