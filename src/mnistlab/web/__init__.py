"""``mnistlab serve``: a run behind an HTTP API and a draw-a-digit page (``app``), with what a
request may carry (``inputs``).
"""
