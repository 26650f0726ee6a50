"""Landing raw TES JSON and configurations in PostgreSQL schema `raw`."""
