"""Agreement over time: cumulative nominal alpha at the end of each period."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from annotate.services.agreement.coding import number
from annotate.stats import agreement

TIMELINE_MAX_POINTS = 30
# Each point is an alpha over all judgments up to it; on big projects fewer points keep the timeline's cost
# near that of a dozen alphas over everything.
TIMELINE_JUDGMENT_BUDGET = 6_000_000
TIMELINE_MIN_POINTS = 8


def alpha_over_time(
    *,
    units: NDArray[np.int64],
    coders: NDArray[np.int64],
    choice: NDArray[np.float64],
    created: NDArray[np.float64],
) -> dict[str, Any]:
    """Cumulative nominal alpha at the end of each day (week, or month for long projects), at most
    ``TIMELINE_MAX_POINTS`` points (fewer on big projects, see ``TIMELINE_JUDGMENT_BUDGET``) spread evenly
    over the periods, always including the last."""
    if not created.size:
        return {"granularity": "day", "points": []}
    order = np.argsort(created, kind="stable")
    stamps = (created[order] * 1e6).astype("datetime64[us]").astype("datetime64[D]")
    span = int((stamps[-1] - stamps[0]).astype(np.int64)) + 1
    if span <= 62:
        granularity, periods = "day", stamps
    elif span <= 2 * 365:
        # numpy counts weeks from a Thursday (1970-01-01); shifting by four days makes them start on Monday.
        granularity = "week"
        periods = ((stamps - np.timedelta64(4, "D")).astype("datetime64[W]") + np.timedelta64(4, "D")).astype(
            "datetime64[D]"
        )
    else:
        granularity, periods = "month", stamps.astype("datetime64[M]").astype("datetime64[D]")
    starts = np.unique(periods)
    # The prefixes average half the judgments, so that many points cost about the budget in all.
    most = int(
        np.clip(2 * TIMELINE_JUDGMENT_BUDGET // created.size, TIMELINE_MIN_POINTS, TIMELINE_MAX_POINTS)
    )
    if starts.size > most:
        starts = starts[np.unique(np.linspace(0, starts.size - 1, most).round().astype(np.int64))]
    ordered_units, ordered_coders, ordered_choice = units[order], coders[order], choice[order]
    points = []
    for start in starts:
        end = int(np.searchsorted(periods, start, side="right"))
        alpha = agreement.krippendorff_alpha(
            units=ordered_units[:end],
            coders=ordered_coders[:end],
            values=ordered_choice[:end],
            level="nominal",
        )
        points.append({"period": str(start), "alpha": number(alpha), "judgments": end})
    return {"granularity": granularity, "points": points}
