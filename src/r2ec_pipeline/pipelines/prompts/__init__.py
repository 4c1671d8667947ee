"""Samples, split protocols and chat-formatted prompts.

Its ``pipeline.py`` builds it (``create_pipeline``); ``nodes.py`` imports without Kedro."""
