"""Liaison crypto package."""
