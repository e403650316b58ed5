"""Benchmarks: run as modules (`python -m bench.render`); results are written beside them."""
