"""Use cases: what the service does, on plain values (no web framework); they raise `Problem`s."""
