"""Node functions more than one pipeline runs (not a pipeline: no ``pipeline.py``).

They take Kedro parameter blocks and catalog inputs, so they live with the pipelines; the library packages
(``data/``, ``model/``, ``rl/``, ``baselines/``, ``serving/``) take typed parameters. ``recpo``: the RecPO run
(the recpo pipeline's nodes, namespaced again per ablation variant); ``samples``: validation-sample selection.
"""
