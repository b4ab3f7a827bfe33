"""Benchmarks of the pipeline against real services; `python -m bench` runs them all."""
