"""Liaison tests."""
