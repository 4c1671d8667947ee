"""Nodes of the recpo pipeline: the starting policy, validation users, RecPO training and its report.

They live in ``r2ec_pipeline.rl.runs``, which the ablations pipeline reuses for each variant.
"""

from r2ec_pipeline.rl.runs import recpo_report, start_policy, train_recpo_model

__all__ = ["recpo_report", "start_policy", "train_recpo_model"]
