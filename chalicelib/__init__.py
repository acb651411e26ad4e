"""minion: a job scheduler for AWS (the code that ships to Lambda)."""
