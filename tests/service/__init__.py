"""Service tests: the real app over HTTP (httpx), on SQLite and on PostgreSQL."""
