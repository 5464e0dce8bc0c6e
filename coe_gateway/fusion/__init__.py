"""Mixture-of-Thoughts fused expert."""
