"""Statistical process control: control limits and the Western Electric rules, pure functions.

Limits come from a window of earlier points: individuals / moving range (I-MR) for single
values, X-bar / R for subgroups. sigma is MR-bar / 1.128 (d2 for n = 2) or R-bar / d2(n);
the limits are CL +- 3 sigma (for X-bar: CL +- A2 * R-bar, which is the same thing). The R
chart of subgroups has R-bar as its centre line, D3 * R-bar and D4 * R-bar as its limits.

The rules, checked on the newest point and those before it, relative to CL and sigma:
  1. one point beyond 3 sigma;
  2. two of three consecutive points beyond 2 sigma on the same side;
  3. four of five consecutive points beyond 1 sigma on the same side;
  4. eight consecutive points on the same side of the centre line.
A rule fires only if the newest point takes part in it (and rule 4 when the run reaches
exactly eight), so a pattern is reported when it forms rather than replayed with old points;
repeats while a process stays out of control are folded by the alert deduplication.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from statistics import fmean

# d2 for subgroup sizes 2..10 (ASTM E2587).
D2 = {2: 1.128, 3: 1.693, 4: 2.059, 5: 2.326, 6: 2.534, 7: 2.704, 8: 2.847, 9: 2.970, 10: 3.078}
# D3 and D4, the R chart's lower and upper limit factors, for the same sizes (ASTM E2587).
D3 = {2: 0.0, 3: 0.0, 4: 0.0, 5: 0.0, 6: 0.0, 7: 0.076, 8: 0.136, 9: 0.184, 10: 0.223}
D4 = {2: 3.267, 3: 2.574, 4: 2.282, 5: 2.114, 6: 2.004, 7: 1.924, 8: 1.864, 9: 1.816, 10: 1.777}


@dataclass(frozen=True, slots=True)
class Limits:
    centre: float
    sigma: float
    chart: str  # "I-MR" or "Xbar-R"
    size: int = 1
    """The subgroup size (1: individuals)."""
    rbar: float | None = None
    """The mean range of the subgroups (Xbar-R only): the R chart's centre line."""

    @property
    def ucl(self) -> float:
        return self.centre + 3 * self.sigma

    @property
    def lcl(self) -> float:
        return self.centre - 3 * self.sigma

    def range_limits(self) -> dict[str, float]:
        """The R chart's ``r_cl``, ``r_ucl`` and ``r_lcl`` (Xbar-R only, else empty)."""
        if self.rbar is None:
            return {}
        return {
            "r_cl": self.rbar,
            "r_ucl": D4[self.size] * self.rbar,
            "r_lcl": D3[self.size] * self.rbar,
        }

    def as_dict(self) -> dict[str, float | str]:
        return {
            "chart": self.chart,
            "cl": self.centre,
            "ucl": self.ucl,
            "lcl": self.lcl,
            "sigma": self.sigma,
            **self.range_limits(),
        }


@dataclass(frozen=True, slots=True)
class Violation:
    rule: int
    description: str
    points: tuple[float, ...]


RULES = {
    1: "1 point beyond 3 sigma",
    2: "2 of 3 points beyond 2 sigma on one side",
    3: "4 of 5 points beyond 1 sigma on one side",
    4: "8 points in a row on one side of the centre line",
}


def individual_limits(values: Sequence[float]) -> Limits | None:
    """I-MR limits from individual values; None with fewer than 2 or no variation."""
    if len(values) < 2:
        return None
    mr = fmean(abs(b - a) for a, b in pairwise(values))
    if mr == 0:
        return None
    return Limits(centre=fmean(values), sigma=mr / D2[2], chart="I-MR")


def subgroup_limits(subgroups: Sequence[Sequence[float]]) -> Limits | None:
    """X-bar/R limits from subgroups of one size (2..10); None if unusable."""
    if len(subgroups) < 2:
        return None
    size = len(subgroups[0])
    if size not in D2 or any(len(g) != size for g in subgroups):
        return None
    rbar = fmean(max(g) - min(g) for g in subgroups)
    if rbar == 0:
        return None
    centre = fmean(fmean(g) for g in subgroups)
    sigma_xbar = rbar / D2[size] / size**0.5
    return Limits(centre=centre, sigma=sigma_xbar, chart="Xbar-R", size=size, rbar=rbar)


def check_rules(points: Sequence[float], limits: Limits) -> list[Violation]:
    """Rules broken by the newest point (``points[-1]``), oldest point first in ``points``."""
    if not points:
        return []
    z = [(p - limits.centre) / limits.sigma for p in points]
    found: list[Violation] = []
    if abs(z[-1]) > 3:
        found.append(Violation(1, RULES[1], (points[-1],)))
    for rule, (count, of, beyond) in {2: (2, 3, 2.0), 3: (4, 5, 1.0)}.items():
        window = z[-of:]
        if len(window) == of and abs(z[-1]) > beyond:
            side = 1 if z[-1] > 0 else -1
            if sum(1 for v in window if v * side > beyond) >= count:
                found.append(Violation(rule, RULES[rule], tuple(points[-of:])))
    run = z[-8:]
    if len(run) == 8 and (all(v > 0 for v in run) or all(v < 0 for v in run)):
        before = z[-9] if len(z) >= 9 else 0.0
        if before * run[-1] <= 0:  # the run has just reached eight
            found.append(Violation(4, RULES[4], tuple(points[-8:])))
    return found
