"""Data layer: TAU 2020 Mobile layout, generic labelled datasets, audio, feature cache, synthetic corpus."""
