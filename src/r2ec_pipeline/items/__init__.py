"""New items in a trained model's catalog, without retraining (plain Python, no Kedro).

``rows``: an update's rows read from a file, matched against a catalog and given ids; ``update``: the
rows checked by the GX rules, rendered as item prompts and encoded into a model's item table;
``cold_start``: the newest items held out of training and ids across two catalogs. The catalog_update
and cold_start pipelines use them; ``datasets/new_items.py`` reads an update's file for Kedro.
"""
