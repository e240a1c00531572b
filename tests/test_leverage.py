"""Leverage across users: the interval arithmetic by hand, then the ranking end to end."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from builders import NOW, T0
from doxa.core.leverage import ASSOCIATION_NOTE, risk_ratio, strength
from doxa.engine import Engine


def test_the_lift_interval_is_katz_log_interval_worked_by_hand() -> None:
    # 8 of 10 holders converted, 2 of 10 others: RR = 0.8 / 0.2 = 4.
    # SE(ln RR) = sqrt(1/8 - 1/10 + 1/2 - 1/10) = sqrt(0.425) = 0.651920
    # ln 4 = 1.386294; 1.959964 * 0.651920 = 1.277740
    # low = e^(1.386294 - 1.277740) = e^0.108554 = 1.11466
    # high = e^(1.386294 + 1.277740) = e^2.664034 = 14.3541
    rr = risk_ratio(8, 10, 2, 10)
    assert rr.lift == pytest.approx(4.0)
    assert rr.low == pytest.approx(1.11466, rel=1e-4)
    assert rr.high == pytest.approx(14.3541, rel=1e-4)
    assert not rr.corrected
    assert strength(rr) == pytest.approx(0.108554, rel=1e-3)  # ln(low): the interval clears 1


def test_a_zero_cell_adds_a_half_to_every_cell() -> None:
    # 5 of 5 holders converted, 0 of 5 others: cells 5.5, 0.5, 0.5, 5.5; n1 = n2 = 6.
    # RR = (5.5/6) / (0.5/6) = 11; SE = sqrt(1/5.5 - 1/6 + 1/0.5 - 1/6) = sqrt(1.848485)
    # = 1.359590; 1.959964 * 1.359590 = 2.664707
    # low = 11 * e^-2.664707 = 0.76579; high = 11 * e^2.664707 = 158.008
    rr = risk_ratio(5, 5, 0, 5)
    assert rr.corrected
    assert rr.lift == pytest.approx(11.0)
    assert rr.low == pytest.approx(0.76579, rel=1e-4)
    assert rr.high == pytest.approx(158.008, rel=1e-4)
    assert strength(rr) == 0.0  # the interval spans 1: no claim


def test_a_group_that_goes_with_not_converting_has_strength_from_its_upper_bound() -> None:
    rr = risk_ratio(1, 10, 8, 10)
    assert rr.high < 1.0
    assert strength(rr) == pytest.approx(-math.log(rr.high))


@pytest.mark.parametrize("counts", [(3, 2, 1, 4), (1, 0, 1, 4), (-1, 4, 1, 4)])
def test_impossible_counts_are_refused(counts: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError, match="counts must satisfy"):
        risk_ratio(*counts)


async def population(eng: Engine) -> None:
    """20 users; 10 believe the setup is too complex (1 of them converts), 10 do not (8
    convert); everyone wants to cut support costs (no comparison possible); odd-numbered
    users who do not convert churn."""
    for n in range(20):
        user = f"u{n}"
        await eng.observe(user, "goal", "Wants to cut support costs", id=f"{user}-g",
                          at=T0 + timedelta(days=1))
        if n < 10:
            await eng.observe(user, "belief", "Believes the setup is too complex for the team",
                              id=f"{user}-b", at=T0 + timedelta(days=2))
        converts = n == 0 or 10 <= n < 18
        if converts:
            await eng.record_user_outcome(user, "converted", at=T0 + timedelta(days=10),
                                          id=f"{user}-conv")
        elif n % 2:
            await eng.record_user_outcome(user, "churned", at=T0 + timedelta(days=12))


async def test_leverage_ranks_the_group_that_separates_the_outcome_with_its_counts() -> None:
    eng = Engine(store="memory://", clock=lambda: NOW)
    await population(eng)
    report = await eng.leverage("converted", min_users=3)
    assert report.note == ASSOCIATION_NOTE and "not proven causes" in report.note
    assert (report.users, report.reached) == (20, 9)
    first = report.groups[0]
    assert first.label == "Believes the setup is too complex for the team"
    assert (first.stats.with_outcome, first.stats.with_total,
            first.stats.without_outcome, first.stats.without_total) == (1, 10, 8, 10)
    assert first.stats.lift == pytest.approx(0.125)
    assert first.stats.high < 1.0 and first.strength > 0
    assert first.days_before_outcome == pytest.approx(8.0)
    assert "Wants to cut support costs" not in [g.label for g in report.groups]


async def test_against_compares_only_with_users_who_reached_the_other_outcome() -> None:
    eng = Engine(store="memory://", clock=lambda: NOW)
    await population(eng)
    report = await eng.leverage("converted", against="churned", min_users=1)
    # churned: u1, u3, u5, u7, u9 (believers) and u19 (not); the other even users reached
    # neither and are left out.
    assert (report.users, report.reached) == (15, 9)
    belief = next(g for g in report.groups if g.kind == "belief")
    assert (belief.stats.with_outcome, belief.stats.with_total) == (1, 6)


async def test_a_record_made_after_the_outcome_does_not_count() -> None:
    eng = Engine(store="memory://", clock=lambda: NOW)
    await population(eng)
    await eng.observe("u6", "belief", "Believes the setup is too complex for the team",
                      id="late", at=T0 + timedelta(days=30))
    report = await eng.leverage("converted", min_users=3)
    assert report.groups[0].stats.with_total == 10


async def test_a_users_records_ranked_by_the_leverage_of_their_groups() -> None:
    eng = Engine(store="memory://", clock=lambda: NOW)
    await population(eng)
    report = await eng.leverage("converted", min_users=3)
    held = (await eng.model("u3")).leverage(report)
    assert held[0].statement == "Believes the setup is too complex for the team"
    assert held[0].direction == "away from"
    newcomer_record = (await eng.observe("new", "belief", "Believes setup is too complex "
                                         "for the team", id="x", at=T0))[0]
    [mine] = (await eng.model("new")).leverage(report)
    assert mine.record_id == newcomer_record.record_id


async def test_groups_by_dimension_value() -> None:
    eng = Engine(store="memory://", clock=lambda: NOW)
    for n in range(8):
        stage = "business_case" if n < 4 else "evaluating"
        await eng.observe(f"u{n}", "goal", f"Is at stage {stage}", dimension="purchase_stage",
                          value=stage, id=f"s{n}", at=T0)
        if n < 3 or n == 7:
            await eng.record_user_outcome(f"u{n}", "converted", at=T0 + timedelta(days=5))
    report = await eng.leverage("converted", by="dimension", min_users=2)
    assert report.groups[0].key == "purchase_stage=business_case"
    assert report.groups[0].stats.with_outcome == 3


async def test_outcome_events_in_the_stream_and_identify_events_are_kept() -> None:
    eng = Engine(store="memory://", clock=lambda: NOW)
    await eng.ingest("u1", [
        {"id": "i1", "type": "identify", "timestamp": T0, "properties": {"plan": "pro"}},
        {"id": "hb", "type": "heartbeat", "timestamp": T0}])
    profile = await eng.profile("u1")
    assert profile.traits == {"plan": "pro"}
    assert await eng.identify("u1", {"plan": "team", "role": "cto"}, id="i2",
                              at=T0 + timedelta(days=1))
    assert not await eng.identify("u1", {"plan": "team"}, id="i2")
    await eng.record_user_outcome("u1", "renewed", at=T0 + timedelta(days=3), id="o")
    profile = await eng.profile("u1")
    assert profile.traits == {"plan": "team", "role": "cto"}
    assert profile.outcomes == {"renewed": T0 + timedelta(days=3)}
