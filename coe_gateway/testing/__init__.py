"""Helpers for tests and benchmarks (fake upstreams, servers in threads)."""
