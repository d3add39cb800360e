"""IO adapters: PostgreSQL/TimescaleDB, NATS JetStream, embedded servers."""
