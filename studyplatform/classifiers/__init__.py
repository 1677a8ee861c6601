"""Conversation classifiers: versioned definitions asked of a judge model, runs, and labels.

See docs/classifiers.md. Definitions and the protocol section: library.py; the judge client:
judge.py; what the judge reads: units.py; runs: services.py (executed by tasks.py)."""
