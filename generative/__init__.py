"""forgelab's generative models, datasets and metrics."""
