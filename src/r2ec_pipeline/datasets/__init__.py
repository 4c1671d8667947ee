"""Project-specific Kedro datasets, referenced by module path in ``conf/base/catalog.yml``.

The package imports nothing itself: a stage that reads raw files (``raw_sources``) then does not import
the model datasets (``models``), so DVC's code dependencies of each stage stay what the stage uses.
"""
