"""The experiment files shipped with forgelab (``forgelab list experiments``): package data."""
