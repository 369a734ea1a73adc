"""forgelab's native RL agents, each readable top to bottom in one file."""
