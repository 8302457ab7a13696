"""Training a recipe into a run folder: ``fit``, with its schedules, augmentation, memory budget,
health check and early stopping.
"""
