"""Benchmarks and studies of hepnn_coffea, run as modules from the repository root.

``bench.timing``: timed benchmarks that print rates and their ratios measured side by side
(``python -m bench.timing.bench_inference --help``). ``bench.studies``: physics studies on the
shared samples (``python -m bench.studies.finetune --help``). ``bench.common`` (with
``bench.anchor``, ``bench.scoring``, ``bench.rss``): the helpers they share. Results, each table
with the command that produced it: ``bench/README.md``.
"""
