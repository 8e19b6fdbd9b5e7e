"""Dialects: speaking each receiver's and sender's JSON (templates, mappings, stable numbers)."""
