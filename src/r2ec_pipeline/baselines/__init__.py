"""Non-LLM baselines ranked by the same full-ranking evaluator as R²ec (method §6): Popularity and SASRec."""
