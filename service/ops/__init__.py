"""Operators' tools: the `liaison-server` command line, `init`, and the audit commands."""
