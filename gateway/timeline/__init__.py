"""A lead's timeline: its messages, published events, changes and stage moves, newest first."""
