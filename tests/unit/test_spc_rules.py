"""Control limits and the Western Electric rules on known sequences."""

from __future__ import annotations

import pytest
from conveyor_worker.spc import Limits, check_rules, individual_limits, subgroup_limits

LIMITS = Limits(centre=10.0, sigma=1.0, chart="I-MR")


def test_individual_limits_use_the_moving_range() -> None:
    limits = individual_limits([10, 12, 10, 12, 10])
    assert limits is not None
    assert limits.centre == pytest.approx(10.8)
    assert limits.sigma == pytest.approx(2 / 1.128)
    assert limits.ucl == pytest.approx(10.8 + 3 * 2 / 1.128)


def test_subgroup_limits_match_a2_r_bar() -> None:
    groups = [[9.0, 11.0], [10.0, 12.0], [8.0, 10.0]]
    limits = subgroup_limits(groups)
    assert limits is not None
    assert limits.centre == pytest.approx(10.0)
    a2 = 1.880  # the textbook A2 for n = 2
    assert limits.ucl - limits.centre == pytest.approx(a2 * 2.0, rel=1e-3)


def test_subgroups_have_an_r_chart_from_r_bar_and_individuals_none() -> None:
    # Ranges 2, 4, 3 of subgroups of 7: R-bar 3, the R chart's limits D3 and D4 times it.
    groups = [[9.0, 10, 10, 10, 10, 10, 11], [8.0, 10, 10, 10, 10, 10, 12], [9.0, 10, 12, 10]]
    assert subgroup_limits(groups) is None  # sizes differ
    limits = subgroup_limits([*groups[:2], [9.0, 10, 12, 10, 10, 10, 10]])
    assert limits is not None
    assert limits.range_limits() == pytest.approx(
        {"r_cl": 3.0, "r_ucl": 1.924 * 3.0, "r_lcl": 0.076 * 3.0}
    )
    assert limits.as_dict()["r_ucl"] == pytest.approx(1.924 * 3.0)
    single = individual_limits([10, 12, 10, 12, 10])
    assert single is not None
    assert single.range_limits() == {}
    assert "r_cl" not in single.as_dict()


def test_no_limits_without_variation_or_data() -> None:
    assert individual_limits([5.0]) is None
    assert individual_limits([5.0, 5.0, 5.0]) is None
    assert subgroup_limits([[1.0, 2.0], [1.0]]) is None


@pytest.mark.parametrize(
    ("points", "rules"),
    [
        ([10, 10.5, 9.5, 13.5], {1}),
        ([10, 10, 6.2], {1}),
        ([10, 12.5, 9, 12.2], {2}),
        ([10, 11.5, 11.2, 9, 11.4, 11.3], {3}),
        ([9, 10.2, 10.4, 10.1, 10.3, 10.2, 10.6, 10.1, 10.2], {4}),
    ],
)
def test_each_rule_fires_on_its_pattern(points: list[float], rules: set[int]) -> None:
    assert {v.rule for v in check_rules(points, LIMITS)} == rules


def test_in_control_sequence_raises_nothing() -> None:
    # Alternating around the centre within one sigma: every rule quiet at every point.
    seq = [10 + (0.5 if i % 2 else -0.4) * (1 + (i % 3) / 10) for i in range(60)]
    for end in range(1, len(seq) + 1):
        assert check_rules(seq[:end], LIMITS) == []


def test_a_run_is_reported_when_it_forms_not_with_every_later_point() -> None:
    run = [9.0] + [10.3] * 12
    fired = [
        end
        for end in range(1, len(run) + 1)
        if any(v.rule == 4 for v in check_rules(run[:end], LIMITS))
    ]
    assert fired == [9]
