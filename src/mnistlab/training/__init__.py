"""Training a recipe into a run folder: ``fit`` and ``resume`` (``fit.py``, the loop), with the
plan of where a training starts (``plan``), the watch that decides when it stops (``watch``:
health check, early stopping), what it writes (``recorder``) and prints (``console``), and its
schedules, augmentation and memory budget.
"""
