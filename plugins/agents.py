"""Built-in plugin: agents (being written)."""
