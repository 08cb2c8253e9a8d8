"""Workflows that train and evaluate: compress a run, train a teacher ensemble, the demo."""
