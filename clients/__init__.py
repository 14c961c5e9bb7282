"""Liaison clients package."""
