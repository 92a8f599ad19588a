"""Benchmarks of the ssd_lesson library (run from a checkout; see README.md here)."""
