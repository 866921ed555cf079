"""The synthetic generator: reproducible users whose events follow their planted phases."""

from __future__ import annotations

from collections import Counter

import pytest

from evals.synthetic import BASE_TS, DAY, HOUR, SyntheticData, catalog, generate, user_events
from evals.types import Interaction


@pytest.fixture(scope="module")
def data() -> SyntheticData:
    return generate(40, seed=11)


def _fingerprint(d: SyntheticData) -> tuple[object, ...]:
    return (d.dataset.name, tuple(d.dataset.interactions),
            tuple((u, tuple(ps)) for u, ps in sorted(d.truth.items())))


def test_same_seed_same_data_and_other_seeds_differ() -> None:
    first, again, other = generate(8, seed=5), generate(8, seed=5), generate(8, seed=6)
    assert _fingerprint(first) == _fingerprint(again)
    assert first.dataset.interactions != other.dataset.interactions
    assert list(first.truth.values()) != list(other.truth.values())


def test_a_users_data_does_not_depend_on_how_many_users_were_asked_for() -> None:
    small, large = user_events(generate(3, seed=9)), user_events(generate(7, seed=9))
    key = [(e.item, e.ts, e.rating) for e in small["synth-u0002"]]
    assert key == [(e.item, e.ts, e.rating) for e in large["synth-u0002"]]


def test_catalog_has_distinct_categories_with_specific_items() -> None:
    items, categories = catalog()
    per_category = Counter(item.genres[0] for item in items.values())
    assert 8 <= len(categories) <= 12
    assert set(per_category) == set(categories)
    assert all(20 <= n <= 30 for n in per_category.values()), per_category
    titles = [item.title for item in items.values()]
    assert len(set(titles)) == len(titles)
    for item in items.values():
        assert len(item.genres) == 1 and item.tags
        assert item.description.endswith(".") and len(item.description.split()) >= 6
        assert item.genres[0] in item.text and item.title in item.text
    assert all(len(text.split()) >= 8 for text in categories.values())


def test_dataset_is_ordered_and_spaced_like_real_activity(data: SyntheticData) -> None:
    rows = data.dataset.interactions
    assert [(e.ts, e.seq) for e in rows] == sorted((e.ts, e.seq) for e in rows)
    assert len({e.seq for e in rows}) == len(rows)
    assert all(e.item in data.dataset.items for e in rows)
    for events in user_events(data).values():
        assert events[0].ts >= BASE_TS
        gaps = [b.ts - a.ts for a, b in zip(events, events[1:], strict=False)]
        assert all(HOUR <= g <= 4 * DAY for g in gaps)
        assert len(set(gaps)) > len(gaps) // 2  # not a metronome


def test_phases_tile_the_history_and_change_the_main_interest(data: SyntheticData) -> None:
    events_by_user = user_events(data)
    for user, phases in data.truth.items():
        events = events_by_user[user]
        assert 2 <= len(phases) <= 3
        assert phases[0].start_ts == events[0].ts and phases[-1].end_ts > events[-1].ts
        for prev, nxt in zip(phases, phases[1:], strict=False):
            assert prev.end_ts == nxt.start_ts
            assert nxt.main not in prev.categories
        for phase in phases:
            assert sum(phase.categories.values()) == pytest.approx(1.0)
            assert phase.start_event == sum(e.ts < phase.start_ts for e in events)
            assert events[phase.start_event].ts == phase.start_ts


def test_most_events_of_a_phase_come_from_its_planted_categories(data: SyntheticData) -> None:
    events_by_user = user_events(data)
    on_plan = total = 0
    for user, phases in data.truth.items():
        for phase in phases:
            inside = [e for e in events_by_user[user] if phase.contains(e.ts)]
            planted = [e for e in inside if data.item_category[e.item] in phase.categories]
            assert len(planted) >= 0.7 * len(inside)
            main = sum(data.item_category[e.item] == phase.main for e in inside)
            assert main > len(inside) / 2  # the heaviest category leads the phase
            on_plan += len(planted)
            total += len(inside)
    assert 0.84 <= on_plan / total <= 0.96  # about the 10% noise share


def test_positive_ratings_sit_on_planted_categories_and_noise_is_rated_low(
        data: SyntheticData) -> None:
    def planted(user: str, e: Interaction) -> bool:
        phase = next(p for p in data.truth[user] if p.contains(e.ts))
        return data.item_category[e.item] in phase.categories

    rows = data.dataset.interactions
    positives = [e for e in rows if e.rating is not None and e.rating >= 4]
    noise = [e for e in rows if not planted(e.user, e)]
    assert all(e.rating in {1.0, 2.0, 3.0, 4.0, 5.0} for e in rows)
    assert sum(planted(e.user, e) for e in positives) >= 0.95 * len(positives)
    assert noise and sum(e.rating is not None and e.rating <= 2 for e in noise) >= 0.5 * len(noise)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        generate(-1, seed=0)
    with pytest.raises(ValueError):
        generate(2, seed=0, noise_share=1.0)
