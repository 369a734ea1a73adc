"""Built-in plugin: sb3 (being written)."""
