"""Deals: an amount of money at a stage, with a probability, optionally a lead's."""
