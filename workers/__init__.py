"""Leadgate's workers: what runs off the request path (webhook delivery and its relay)."""
