"""One module per peer of bench/frameworks.py; each runs as ``python bench/_peers/<peer>.py``.

Not part of the mnistlab package: these are benchmark scripts, importable by bench/*.py only to
read their ``REQUIRES`` (nothing heavy is imported at module level).
"""
