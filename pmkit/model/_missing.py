"""The one missing-data policy of `var`, `expected_shortfall` and `performance_table`.

Leading NaN mean "not started yet" (an asset before its listing, a portfolio
before inception): those periods are left out, never zero-filled. A NaN
*after* a series' first value is a gap: it is refused with a
`pmkit.errors.ValidationError` naming the series and the first such time,
because filling it would book a zero return and dropping it would silently
splice two periods together.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pmkit.errors import ValidationError

__all__ = ["gap_error", "refuse_gaps"]


def gap_error(field: str, label: Any, when: Any) -> ValidationError:
    """The error of the policy for series ``label`` with a gap at time ``when``."""
    return ValidationError(
        field,
        label,
        f"is NaN at time {when!s} after its first return; only leading NaN "
        "(not started yet) are accepted, gaps are never zero-filled or dropped",
    )


def refuse_gaps(values: np.ndarray, labels: Any, times: Any, field: str) -> None:
    """Raise `gap_error` for the first column of ``values (T, N)`` with a gap.

    Parameters
    ----------
    values : numpy.ndarray, shape (T, N)
        Series along time in columns; NaN where unobserved.
    labels : sequence, length N
        Names of the columns (assets or portfolios).
    times : sequence, length T
        Time labels, for the message.
    field : str
        Field named by the error.
    """
    valid = ~np.isnan(values)
    gap = (np.cumsum(valid, axis=0) > 0) & ~valid
    cols = np.flatnonzero(gap.any(axis=0))
    if cols.size:
        k = int(cols[0])
        raise gap_error(field, np.asarray(labels)[k], times[int(np.argmax(gap[:, k]))])
