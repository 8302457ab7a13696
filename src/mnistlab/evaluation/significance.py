"""What a paired test says about a difference, in the words every table and page uses.

A difference is real when its Holm-corrected p-value is below ``ALPHA``. Above it the test has
not shown one: "not shown", with the p-value, never "noise" (a test that cannot tell two
models apart does not prove them equal; more seeds or test images may).

>>> verdict(0.012, 0.004), verdict(-0.01, 0.004), verdict(0.001, 0.31), verdict(None, None)
('real: better', 'real: worse', 'not shown', 'untested')
>>> stated(0.001, 0.31), stated(0.02, 0.0)
('not shown (Holm p = 0.31)', 'real: better (Holm p < 1e-300)')
"""

from __future__ import annotations

import math

ALPHA = 0.05


def verdict(
    diff: float | None, p_holm: float | None, alpha: float = ALPHA, higher_is_better: bool = True
) -> str:
    """'real: better', 'real: worse', 'not shown' (p at or above ``alpha``) or 'untested' (no
    p-value: too few seeds or images for the test). ``diff`` is variant minus baseline of a
    metric where higher is better, unless ``higher_is_better`` is False (an error, e.g. ECE).

    >>> verdict(0.01, 0.001, higher_is_better=False)
    'real: worse'
    """
    if p_holm is None or not math.isfinite(p_holm):
        return "untested"
    if p_holm >= alpha:
        return "not shown"
    up = (diff or 0.0) > 0
    return "real: better" if up == higher_is_better else "real: worse"


def p_text(p: float) -> str:
    """A p-value in three significant digits; one that underflowed to 0 as '< 1e-300'."""
    return "< 1e-300" if p == 0 else format(p, ".3g")


def stated(diff: float | None, p_holm: float | None, alpha: float = ALPHA) -> str:
    """The verdict with its Holm-corrected p-value, e.g. 'not shown (Holm p = 0.31)'."""
    word = verdict(diff, p_holm, alpha)
    if word == "untested":
        return word
    p = p_text(p_holm)
    return f"{word} (Holm p {p if p.startswith('<') else '= ' + p})"
