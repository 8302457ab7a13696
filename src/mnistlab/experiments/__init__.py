"""Experiments over many runs: ``compare`` (variants x seeds, paired tests), ``search`` (Optuna),
the shared study storage (``studies``), the leaderboard, and MLflow tracking (``track``).
"""
