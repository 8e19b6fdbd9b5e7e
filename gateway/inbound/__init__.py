"""Inbound events: replies and opt-outs posted by providers, verified, stored once, fanned out."""
