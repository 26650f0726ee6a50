"""Benchmarks: this project against a re-implementation of the original row-trigger design.

`python -m bench --scale small|production|large [--runs N] [--out bench/results]`
"""
