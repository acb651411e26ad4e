"""The local stack: the whole service on one machine against an embedded AWS emulator."""
