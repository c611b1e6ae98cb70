"""Schedules, losses and the custom training loop."""
