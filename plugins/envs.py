"""Built-in plugin: envs (being written)."""
