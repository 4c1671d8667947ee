"""Dual-head R²ec model: backbone loading, rec_head, generation (plain PyTorch, no Kedro)."""
