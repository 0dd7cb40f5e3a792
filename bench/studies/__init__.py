"""Physics studies on the shared samples: taggers, regression, calorimeter models, fine-tuning.

Each module runs as ``python -m bench.studies.<name>`` from the repository root; results and the
commands that produced them are in ``bench/README.md``.
"""
