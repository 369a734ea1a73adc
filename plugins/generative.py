"""Built-in plugin: generative (being written)."""
