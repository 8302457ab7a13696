"""How far an accuracy measured on n test images can be from the model's true accuracy: the
Wilson score interval, the one that stays inside [0, 1] and keeps its coverage near 0 % and
100 % (where the textbook p +- z * sqrt(p(1-p)/n) collapses to a point at 100 %).

>>> low, high = wilson(9_800, 10_000)
>>> f"{low:.4f}-{high:.4f}"
'0.9771-0.9826'
>>> wilson(10, 10)[1]
1.0
"""

from __future__ import annotations

import math
from typing import Any

LEVEL = 0.95
METHOD = "Wilson score"


def wilson(successes: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """(low, high): the Wilson score interval at ``level`` for ``successes`` of ``n``.

    ``successes`` may be fractional: a mean count over seeds that shared the same n images.
    """
    from scipy.stats import norm

    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"expected 0 <= successes <= n and n > 0, got {successes} of {n}")
    z = float(norm.ppf(0.5 + level / 2))
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At 0 and n the bounds are exactly 0 and 1; rounding must not move them off.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    return low, 1.0 if successes == n else min(1.0, centre + half)


def accuracy_interval(correct: float, n: int, level: float = LEVEL) -> dict[str, Any]:
    """The JSON record of an accuracy's interval: low, high, level, correct, method."""
    low, high = wilson(correct, n, level)
    return {"low": low, "high": high, "level": level, "correct": correct, "method": METHOD}


def interval_text(low: float, high: float, level: float = LEVEL) -> str:
    """'95 % CI 97.71-98.26 %'."""
    return f"{100 * level:.0f} % CI {100 * low:.2f}\u2013{100 * high:.2f} %"
