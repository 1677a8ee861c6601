"""Chat records; the model providers live in providers/ and need no tables."""
