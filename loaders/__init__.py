"""Loaders: fetch TES terminology into files and land TES JSON and configurations in schema `raw`."""
