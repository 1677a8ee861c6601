"""Management commands of the chat app."""
