"""Subcommands that orchestrate several steps (demo, sync, docs, report)."""
