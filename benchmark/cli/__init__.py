"""The command line's layer (``run_benchmark.py``): parsing flag values, the
runs they ask for, and what is printed and written about them.

The top layer: it may import ``methods`` and everything in ``benchmark``;
nothing outside ``run_benchmark.py`` imports it.
"""
