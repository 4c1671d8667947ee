"""Non-LLM baselines ranked by the same full-ranking evaluator as R²ec (spec §6): Popularity and SASRec."""
