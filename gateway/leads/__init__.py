"""Leads: ingestion (match, merge, stage pipeline), the leads API, and their events."""
