"""Benchmarks of csbs-orchestrator against two baselines, each tool in its own process.

``python -m bench`` (``make bench``) runs the quick sizes in a few minutes; ``--full`` runs
the sizes BENCHMARKS.md reports; ``--write`` puts the figures into BENCHMARKS.md.
"""
