"""Shared machinery of the LEVI benchmark harness: configs, trainer, mesh,
run store, protocol, tables and the networks in ``benchmark.models``."""
