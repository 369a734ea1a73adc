"""forgelab's own gymnasium environments and wrappers."""
