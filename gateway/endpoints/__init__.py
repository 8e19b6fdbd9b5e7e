"""Webhook endpoints: registration, secrets and their rotation, and test events."""
