"""Serving: the dual-head model as an MLflow pyfunc, and its registration with champion/challenger aliases."""
