"""Evaluation: DCASE metrics, prediction over a split, reports and output files."""
