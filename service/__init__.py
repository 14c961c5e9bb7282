"""Liaison service package."""
