"""Deliveries as operators see them: list, inspect attempts, retry, replay, stop, publish."""
