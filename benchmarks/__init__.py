"""registry_nb's benchmarks (``python -m benchmarks``; ``--smoke`` for a quick check).

Not part of the package and not part of the test command; ``tests/test_benchmarks_smoke.py``
runs the smoke mode so the script cannot rot.
"""
