"""The interest forecast: decay plus trend per facet, and the like-facets' mix."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.core.config import Settings
from service.core.schemas import Horizon, Polarity
from service.llm.runtime import LLMRuntime
from service.profiles.forecast import (
    FacetState,
    ForecastRules,
    VersionPoint,
    forecast_mix,
    forecast_profile,
    hits,
    version_point,
)
from service.profiles.merge import DecayRules
from service.vectors.embeddings import Embedder
from tests.utils import profiles as profile_world
from tests.utils.api import NOW, ApiTenant, app_client, event, make_tenant
from tests.utils.fakes import Clock, topic_summarizer

T0 = datetime(2024, 3, 1, tzinfo=UTC)
RULES = DecayRules()  # short half-life 7 days, long 90, eta 0.5


def state(facet_id: str, strength: float, reinforcements: int = 0, *,
          horizon: Horizon = "short", polarity: Polarity = "like", pinned: bool = False,
          active: bool = True) -> FacetState:
    return FacetState(facet_id, strength, horizon, polarity, reinforcements, pinned, active)


def weekly_history(weeks: int, reinforced: bool) -> list[VersionPoint]:
    """A facet created at 0.45 and refreshed weekly: reinforced by eta*n = 0.45 each week
    (or left to decay), as the merge would record it."""
    points = []
    strength, count = 0.45, 0
    for week in range(weeks):
        if week:
            decayed = strength / 2  # one short half-life
            if reinforced:
                strength, count = decayed + (1 - decayed) * 0.45, count + 1
            else:
                strength = decayed
        points.append(VersionPoint(week + 1, T0 + timedelta(weeks=week),
                                   (state("f1", strength, count),)))
    return points


def test_a_facet_never_reinforced_forecasts_pure_decay() -> None:
    history = weekly_history(5, reinforced=False)
    at = history[-1].at + timedelta(days=3)
    now = state("f1", history[-1].facets[0].strength * 2 ** (-3 / 7))
    [f] = forecast_profile([now], history, at, RULES)
    # Created 31 days ago, beyond the 28 days of hits read: no trend is left.
    assert f.hits_per_day == 0.0 and f.trend_per_day == 0.0
    lam = math.log(2) / 7
    expected = now.strength * (1 - math.exp(-lam * 7)) / (lam * 7)
    assert f.forecast == pytest.approx(expected) == pytest.approx(f.decayed)
    # The mean over a week of decay sits near the decayed strength at its midpoint.
    assert f.forecast == pytest.approx(now.strength * 2 ** (-3.5 / 7), rel=0.03)
    assert f.forecast < f.strength
    # Created yesterday, the same facet would still be rising.
    fresh = forecast_profile([now], [VersionPoint(1, at - timedelta(days=1), (now,))], at,
                             RULES)[0]
    assert fresh.trend_per_day > 0 and fresh.forecast > f.forecast


def test_a_steadily_reinforced_facet_forecasts_above_its_decayed_value() -> None:
    history = weekly_history(4, reinforced=True)
    at = history[-1].at
    [f] = forecast_profile([history[-1].facets[0]], history, at, RULES)
    assert [h.gain for h in hits("f1", history, RULES)] == pytest.approx([0.45] * 4)
    # Hits 0, 7, 14 and 21 days ago, weighted e^(-age / 2 days), over 21 days watched.
    weights = sum(math.exp(-days / 2) for days in (0, 7, 14, 21))
    assert f.hits_per_day == pytest.approx(weights / (2 * (1 - math.exp(-21 / 2))))
    assert f.mean_gain == pytest.approx(0.45)
    assert f.trend_per_day == pytest.approx(f.hits_per_day * 0.45 * (1 - f.strength))
    assert f.decayed < f.forecast <= 1.0
    # Damped further, the same facet holds up less well.
    damped = forecast_profile([history[-1].facets[0]], history, at, RULES,
                              ForecastRules(damping=0.25))[0]
    assert f.decayed < damped.forecast < f.forecast


def test_trend_stays_within_bounds_over_a_long_period() -> None:
    history = weekly_history(3, reinforced=True)
    at = history[-1].at
    year = ForecastRules(period=timedelta(days=365), damping=1.0)
    [f] = forecast_profile([state("f1", 0.99, 2)], history, at, RULES, year)
    assert 0.0 <= f.forecast <= 1.0
    # Over a year the forecast tends to the balance of decay and reinforcement.
    rho = 1.0 * f.hits_per_day * f.mean_gain
    balance = rho / (rho + math.log(2) / 7)
    assert f.forecast == pytest.approx(balance, abs=0.02)


def test_pinned_facets_do_not_decay() -> None:
    pinned = state("f1", 0.6, pinned=True)
    history = [VersionPoint(1, T0 - timedelta(days=60), (pinned,))]
    [f] = forecast_profile([pinned], history, T0, RULES, ForecastRules(period=timedelta(days=30)))
    assert f.forecast == f.decayed == pytest.approx(0.6)
    assert f.trend_per_day == 0.0


def test_long_term_facets_fade_slower_than_short_term_ones() -> None:
    facets = [state("short", 0.5), state("long", 0.5, horizon="long")]
    history = [VersionPoint(1, T0 - timedelta(days=30), tuple(facets))]
    by_id = {f.facet_id: f for f in forecast_profile(facets, history, T0, RULES)}
    assert by_id["long"].forecast > by_id["short"].forecast
    assert forecast_profile(facets, history, T0, RULES)[0].facet_id == "long"


def test_the_mix_holds_active_likes_only_and_sums_to_one() -> None:
    facets = [state("jazz", 0.6), state("hiking", 0.3), state("romance", 0.8, polarity="avoid"),
              state("chess", 0.7, active=False), state("gone", 0.0)]
    history = [VersionPoint(1, T0, tuple(facets))]
    forecasts = forecast_profile(facets, history, T0, RULES)
    assert {f.facet_id for f in forecasts} == {"jazz", "hiking", "romance", "gone"}
    mix = forecast_mix(forecasts)
    assert set(mix) == {"jazz", "hiking"}
    assert sum(mix.values()) == pytest.approx(1.0)
    assert mix["jazz"] > mix["hiking"]
    assert forecast_mix([f for f in forecasts if f.polarity == "avoid"]) == {}


def test_a_rising_interest_gains_share_over_a_fading_one() -> None:
    """Jazz was strong but is no longer reinforced; hiking is new and reinforced every
    three days. The forecast mix moves towards hiking; the strengths now do not."""
    old = state("jazz", 0.6, 2)
    points = [VersionPoint(1, T0 - timedelta(days=30), (state("jazz", 0.7, 1),))]
    hiking = 0.3
    for n, day in enumerate((9, 6, 3, 0)):
        jazz = state("jazz", 0.7 * 2 ** (-(30 - day) / 7), 1)
        if n:
            hiking = hiking * 2 ** (-3 / 7)
            hiking += (1 - hiking) * 0.3
        points.append(VersionPoint(n + 2, T0 - timedelta(days=day),
                                   (jazz, state("hiking", hiking, n))))
    now = points[-1].facets
    forecasts = forecast_profile(now, points, T0, RULES)
    mix = forecast_mix(forecasts)
    current = {f.facet_id: f.strength for f in now}
    share_now = current["hiking"] / (current["hiking"] + current["jazz"])
    assert mix["hiking"] > share_now
    assert {f.facet_id: f.trend_per_day > 0 for f in forecasts} == {"hiking": True,
                                                                    "jazz": False}
    assert old.facet_id == "jazz"


def test_versions_parse_from_stored_json_and_history_bounds_the_window() -> None:
    snapshot: dict[str, Any] = {"facet_id": "f1", "label": "Jazz", "description": "",
                                "strength": 0.45, "horizon": "short", "polarity": "like",
                                "evidence": ["e1"], "reinforcements": 0, "pinned": False,
                                "suppressed": False, "archived": False}
    first = version_point(1, T0, [snapshot], read_from=T0 - timedelta(days=4))
    assert first.facets == (state("f1", 0.45),)
    assert version_point(2, T0, [{**snapshot, "archived": True}]).facets[0].active is False
    # A profile that has watched four days of activity: one creation, just now.
    [f] = forecast_profile(first.facets, [first], T0, RULES)
    assert f.hits_per_day == pytest.approx(1 / (2 * (1 - math.exp(-4 / 2))))
    # Only the versions up to the forecast's time count.
    later = version_point(2, T0 + timedelta(days=1), [{**snapshot, "reinforcements": 1,
                                                       "strength": 0.7}])
    [same] = forecast_profile(first.facets, [first, later], T0, RULES)
    assert same == f
    # A history that does not start at version 1 counts no creation at its oldest version.
    assert hits("f1", [version_point(5, T0, [snapshot])], RULES) == []


# Over HTTP: the real app, real embeddings and Chroma, a summarizer fake that reads the prompt.

# The profile tests' topics and catalog, without jazz and Solaris.
TOPICS = {label: topic for label, topic in profile_world.TOPICS.items() if label != "Jazz music"}
CATALOG = [i for i in profile_world.CATALOG if i["item_id"] != "solaris"]


@pytest.fixture
def forecast_app(settings: Settings,
                 embedder: Embedder) -> Iterator[tuple[ApiTenant, Clock]]:
    clock = Clock(NOW - timedelta(days=60))  # events must not lie in the real future
    # Time decay only: the fading interest must outlive three refreshes that pass it
    # over (displacement has its own tests in test_merge.py).
    settings = settings.model_copy(update={"displacement_rate": 0.0})
    llm = LLMRuntime(settings, chat_model=topic_summarizer(TOPICS))
    with app_client(settings, llm, clock=clock, embedder=embedder) as client:
        t = make_tenant(client, "acme")
        assert t.put("/v1/items", json={"items": CATALOG}).status_code == 200
        yield t, clock


def _watch(t: ApiTenant, clock: Clock, tag: str, *pairs: tuple[str, str]) -> None:
    """Events an hour apart ending at the clock's now, then a refresh."""
    now = clock()
    events = [event("u1", kind, item_id, ts=now - timedelta(hours=len(pairs) - n),
                    event_id=f"{tag}-{item_id}", **({"value": 1} if kind == "rating" else {}))
              for n, (kind, item_id) in enumerate(pairs)]
    assert t.post("/v1/events", json={"events": events}).status_code == 200
    r = t.post("/v1/users/u1/profile/refresh")
    assert r.status_code == 200, r.text


@pytest.mark.slow
def test_the_forecast_endpoint_follows_the_rising_interest(
        forecast_app: tuple[ApiTenant, Clock]) -> None:
    t, clock = forecast_app
    empty = t.post("/v1/events", json={"events": [
        event("u2", "like", "alien", ts=clock() - timedelta(hours=1))]})
    assert empty.status_code == 200
    none_yet = t.get("/v1/users/u2/profile/forecast").json()
    assert (none_yet["version"], none_yet["facets"], none_yet["mix"]) == (0, [], [])

    _watch(t, clock, "w1", ("like", "alien"), ("like", "dune"), ("rating", "notebook"))
    for week in range(2, 5):  # cooking every four days from here on; sci-fi never again
        clock.advance(days=4)
        _watch(t, clock, f"w{week}", ("like", "bread"), ("like", "pasta"), ("like", "curry"))
    clock.advance(days=1)

    r = t.get("/v1/users/u1/profile/forecast", params={"days": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == 4 and body["days"] == 7
    by_label = {f["label"]: f for f in body["facets"]}
    # The one low rating (a third of its refresh's events) makes a weak avoid-facet that
    # may have decayed below the archive floor by now; both interests are there.
    assert {"Home cooking", "Science fiction films"} <= set(by_label) <= set(TOPICS)
    # Current strengths are those the profile shows now.
    shown = {f["label"]: f["strength"]
             for f in t.get("/v1/users/u1/profile").json()["facets"]}
    assert {label: f["strength"] for label, f in by_label.items()} == pytest.approx(shown)

    cooking, scifi = by_label["Home cooking"], by_label["Science fiction films"]
    assert cooking["trend_per_day"] > 0
    assert cooking["forecast_strength"] > cooking["decayed_strength"]
    assert scifi["forecast_strength"] < scifi["strength"]  # fading, nearly pure decay
    assert body["facets"][0]["label"] == "Home cooking"
    # The mix: like-facets only, summing to one, the rising interest gaining share.
    mix = {m["label"]: m["share"] for m in body["mix"]}
    assert set(mix) == {"Home cooking", "Science fiction films"}
    assert sum(mix.values()) == pytest.approx(1.0, abs=1e-5)
    now_share = cooking["strength"] / (cooking["strength"] + scifi["strength"])
    assert mix["Home cooking"] > now_share
    # A longer period lets the unreinforced facet fade further.
    year = t.get("/v1/users/u1/profile/forecast", params={"days": 365}).json()
    year_scifi = next(f for f in year["facets"] if f["label"] == "Science fiction films")
    assert year_scifi["forecast_strength"] < scifi["forecast_strength"]


@pytest.mark.slow
@pytest.mark.parametrize("days", ["0", "366", "-3", "week"])
def test_the_forecast_period_is_checked(forecast_app: tuple[ApiTenant, Clock],
                                        days: str) -> None:
    t, clock = forecast_app
    _watch(t, clock, "w1", ("like", "alien"))
    r = t.get("/v1/users/u1/profile/forecast", params={"days": days})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "validation_error" and error["details"][0]["field"] == "days"


@pytest.mark.slow
def test_forecasts_of_unknown_users_and_other_tenants_are_not_found(
        forecast_app: tuple[ApiTenant, Clock]) -> None:
    t, clock = forecast_app
    _watch(t, clock, "w1", ("like", "alien"))
    r = t.get("/v1/users/ghost/profile/forecast")
    assert r.status_code == 404 and r.json()["error"]["code"] == "user_not_found"
    other = make_tenant(t.client, "globex")
    assert other.get("/v1/users/u1/profile/forecast").status_code == 404
    assert t.client.get("/v1/users/u1/profile/forecast").status_code == 401
    operation = t.client.get("/openapi.json").json()["paths"][
        "/v1/users/{user_id}/profile/forecast"]["get"]
    assert {"401", "404", "422"} <= set(operation["responses"])
