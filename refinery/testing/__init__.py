"""Test doubles shipped for tests and local trials (not used by any command): a fake TES server."""
