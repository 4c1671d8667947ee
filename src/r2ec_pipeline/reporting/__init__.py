"""Metrics tables, paired statistics and plots from the evaluation stage's outputs.

``tables`` (labels, flat and markdown tables), ``statistics`` (metrics per model, paired bootstrap CIs),
``plots`` (bar charts), ``summary`` (what `make run` prints at the end: ``python -m r2ec_pipeline.reporting``).
"""
