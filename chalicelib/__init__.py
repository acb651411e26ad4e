"""minion: a job scheduler for AWS (the code that ships to Lambda)."""

__version__ = "0.1.0"
