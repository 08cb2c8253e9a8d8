"""Training: loop, checkpoints, and fit(config)."""
