"""Helpers for the delivery tests: API calls, reading records, and processes run beside a test."""
