"""Participant records: registered now so the app has its place in the project and migrations."""
