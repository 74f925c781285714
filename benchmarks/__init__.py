"""Benchmarks of the studio engine against plain Hugging Face Trainer baselines (see README.md)."""
