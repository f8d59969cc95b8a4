"""Benchmarks (not tests): ``python -m tests.bench [core]`` prints tables and writes JSON."""
