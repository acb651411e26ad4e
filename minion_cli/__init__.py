"""The `minion` command-line client of the minion scheduler API."""

__version__ = "0.1.0"
