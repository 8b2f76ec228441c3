"""Runnable benchmarks, one module per question: ``python -m benchmarks.<name> --help``."""
