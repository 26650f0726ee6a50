"""Reliability and security suite (issue 8): bad inputs, faults, concurrency, idempotency, secrets."""
