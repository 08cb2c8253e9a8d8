"""Compression and the DCASE 2021 size accounting."""
