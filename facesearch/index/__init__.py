"""Where faces are kept: `store` (SQL metadata, the source of truth, with its Alembic
`migrations/`), `spaces` (one FAISS index per named vector space), `indexer` (incremental,
batched, crash-safe runs over media sources), `lock` (one writer at a time)."""
