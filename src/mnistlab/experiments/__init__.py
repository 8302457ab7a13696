"""Experiments over many runs: ``compare`` (variants x seeds, paired tests), ``search`` (Optuna),
a study shared by workers (``shared_study``), the leaderboard, and MLflow tracking (``track``).
"""
