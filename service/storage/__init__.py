"""Storage: the database engine, tables, migrations, the writer's batch connection and live events."""
