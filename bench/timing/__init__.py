"""Timed benchmarks: hepnn_coffea next to a baseline in the same run, rates and their ratios.

Each module runs as ``python -m bench.timing.<name>`` from the repository root; results and the
commands that produced them are in ``bench/README.md``.
"""
