"""tinyasc: low-complexity acoustic scene classification (DCASE 2021 Task 1A)."""

__version__ = "0.1.0"
