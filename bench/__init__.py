"""Velro benchmarks: `python -m bench` (or `make bench`).

A fresh database is built from the stand-in and the migrations, filled with a realistic
dataset, and each scenario is measured against a baseline taken in the same run, so the
figures are ratios that mean something on a noisy shared machine. The report goes to
bench/results/: report.md (the table with anchors and targets), PNG plots, results.json.
"""
