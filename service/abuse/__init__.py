"""Keeping scripts and floods out: bot checks and rate limits."""
