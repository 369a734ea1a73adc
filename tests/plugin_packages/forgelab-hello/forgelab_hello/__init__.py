"""A third-party forgelab plugin: one agent that always takes the same action."""
