"""Training a tenant from its events in a real database, through the service and the CLI."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.cli import main
from service.core.config import Settings
from service.core.errors import ApiError
from service.tenants.service import create_tenant, tenant_by_name
from service.training.contract import UserEvent
from service.training.data import log_from_database
from service.training.models import BaseModels, fit_base_models
from service.training.service import WARM_SHARE, FinalFit, train_log, train_tenant
from service.training.store import ArtifactStore, ModelRegistry, models_root
from tests.utils.api import NOW, event, make_tenant
from tests.utils.training import (
    CYCLE,
    DAY,
    SHOWS,
    START,
    TEXTS,
    cluster_rows,
    cycle_rows,
    fill_tenant,
    make_log,
)


def test_train_tenant_saves_a_version_the_registry_serves(
        train_client: TestClient, train_settings: Settings) -> None:
    events = fill_tenant(train_client)
    with train_client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        tenant = tenant_by_name(session, "acme")
        assert tenant is not None
        log = log_from_database(session, tenant.id, train_settings.rating_max)
        assert len(log) == len(events) - 1
        assert log.event_ids[0] == "u11-0"  # the oldest event first
        weights = dict(zip(log.event_ids, log.weight.tolist(), strict=True))
        assert weights["u0-3"] == 1.0 and weights["u0-2"] == 0.0 and weights["u1-0"] == 0.5
        meta = train_tenant(session, tenant.id, train_settings, progress=False,
                            sequence_seconds=5)
    assert meta.tenant_id == tenant.id and meta.events_used == len(log)
    assert meta.users == 12 and meta.items == len(SHOWS)
    assert meta.sources == ["cooccurrence", "transition", "sequence", "content", "popular"]
    assert not meta.ranker and meta.seconds > 0
    # Measured on the users with five positive events (the three who disliked a show have
    # four); each one's last event is a new, liked show.
    assert meta.heldout["users"] == 9
    assert meta.heldout["transition.hr@10"] == 1.0  # six shows: the next one is in any ten

    store = ArtifactStore(models_root(train_settings))
    assert store.current_version(tenant.id) == meta.version
    loaded = ModelRegistry(store).get(tenant.id)
    assert loaded is not None and loaded.meta == meta
    history = [UserEvent("m2", NOW.timestamp() - 60, 1.0, "x1"),
               UserEvent("m3", NOW.timestamp(), 0.5, "x2")]
    found = loaded.candidates(history, 3, {"m2", "m3"}, NOW.timestamp())
    assert next(iter(found["transition"])) == "m4"
    assert found["transition"]["m4"].via == 1


def test_train_tenant_refuses_a_tenant_without_item_events(
        train_client: TestClient, train_settings: Settings) -> None:
    t = make_tenant(train_client, "quiet")
    t.post("/v1/events", json={"events": [event("u1", "search", None, text="anything")]})
    with train_client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        tenant = tenant_by_name(session, "quiet")
        assert tenant is not None
        with pytest.raises(ApiError) as caught:
            train_tenant(session, tenant.id, train_settings, progress=False)
    assert caught.value.status == 409 and caught.value.code == "no_activity"
    assert ArtifactStore(models_root(train_settings)).current_version(tenant.id) is None


def test_cli_train_prints_the_meta_and_explains_bad_tenants(
        train_client: TestClient, train_settings: Settings,
        capsys: pytest.CaptureFixture[str]) -> None:
    fill_tenant(train_client)
    with train_client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        create_tenant(session, "empty")
    data_dir = str(train_settings.data_dir)

    assert main(["train", "--tenant", "acme", "--data-dir", data_dir]) == 0
    out = capsys.readouterr()
    meta = json.loads(out.out.strip().splitlines()[-1])
    assert meta["events_used"] == 60 and meta["users"] == 12
    assert "training" in out.err  # the progress bar

    assert main(["train", "--tenant", "nobody", "--data-dir", data_dir]) == 2
    assert "no tenant named 'nobody'" in capsys.readouterr().err

    assert main(["train", "--tenant", "empty", "--data-dir", data_dir]) == 1
    assert "no events about items" in capsys.readouterr().err


@pytest.mark.slow  # trains the tenant's models (and ranker) twice
def test_the_sequence_epochs_setting_bounds_training_by_epochs_not_time(
        train_client: TestClient, train_settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`train_sequence_epochs` reaches the sequence model as an epoch count with no time
    limit (the same models whatever the load); unset, the time budget applies."""
    from service.training import models as models_module
    from service.training.jobs import train_with_ranker
    from service.training.sequence import SequenceModel

    fill_tenant(train_client)
    built: list[dict[str, object]] = []

    class Spy(SequenceModel):
        def __init__(self, **kwargs: Any) -> None:
            built.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(models_module, "SequenceModel", Spy)
    bounded = train_settings.model_copy(update={"train_sequence_epochs": 3,
                                                "ranker_facet_features": False})
    timed = bounded.model_copy(update={"train_sequence_epochs": None,
                                       "train_sequence_seconds": 7.0})
    with train_client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        tenant = tenant_by_name(session, "acme")
        assert tenant is not None
        train_with_ranker(session, tenant.id, bounded, None)
        assert built and all(kw["max_epochs"] == 3 and kw["seconds"] == math.inf
                             for kw in built)
        built.clear()
        train_with_ranker(session, tenant.id, timed, None)
    # the held-out fit, then the final one continuing from it for a share of the time
    assert [kw["seconds"] for kw in built] == [7.0, pytest.approx(7.0 * WARM_SHARE)]
    assert all(kw["max_epochs"] == SequenceModel.MAX_EPOCHS for kw in built)
    with pytest.raises(ValueError, match="train_sequence_epochs"):
        Settings(train_sequence_epochs=0)


def test_the_facet_feature_choice_setting_reaches_the_ranker_trainer(
        train_client: TestClient, train_settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`ranker_choose_facet_features` turns on training's one-standard-error choice of
    the profile's columns (`ranker.choose_profile_columns`, tested on its own in
    test_ranker); off by default."""
    from service.training import jobs

    fill_tenant(train_client)
    asked: list[object] = []

    def spy(log: object, fit: object, texts: object, **kwargs: Any) -> tuple[None, dict[
            str, float], list[str]]:
        asked.append(kwargs["choose_profile"])
        return None, {}, ["no ranker: a spy"]

    monkeypatch.setattr(jobs, "train_ranker", spy)
    quick = train_settings.model_copy(update={"train_sequence_epochs": 1,
                                              "ranker_facet_features": False})
    assert quick.ranker_choose_facet_features is False
    with train_client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        tenant = tenant_by_name(session, "acme")
        assert tenant is not None
        meta = jobs.train_with_ranker(session, tenant.id, quick, None)
        assert not meta.ranker and "no ranker: a spy" in meta.notes
        jobs.train_with_ranker(session, tenant.id, quick.model_copy(
            update={"ranker_choose_facet_features": True}), None)
    assert asked == [False, True]


def assert_equal_models(a: BaseModels, b: BaseModels) -> None:
    """The same fitted sources with the same learned numbers."""
    import torch

    assert a.item_ids == b.item_ids
    assert a.sources == b.sources
    assert a.notes == b.notes
    assert a.sequence is not None and b.sequence is not None
    assert a.sequence.net is not None and b.sequence.net is not None
    mine, theirs = a.sequence.net.state_dict(), b.sequence.net.state_dict()
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key
    assert a.sequence.losses == b.sequence.losses
    history = [UserEvent(i, START + DAY * n, 1.0, f"h{n}") for n, i in enumerate(CYCLE[:3])]
    assert a.candidates(history, 5, set(), START) == b.candidates(history, 5, set(), START)


def test_final_models_fit_in_their_own_process_are_the_ones_fit_in_place(
        caplog: pytest.LogCaptureFixture) -> None:
    """workers > 1 fits the saved models in a spawned process beside the held-out fit:
    the same models, number for number, and the same held-out metrics."""
    log = make_log(cycle_rows(users=30) + cluster_rows(users=30))
    args: dict[str, Any] = {"sequence_epochs": 2, "heldout_users": 20}
    alone = train_log(log, TEXTS, **args)
    with caplog.at_level(logging.WARNING, logger="service.training.service"):
        beside = train_log(log, TEXTS, **args, workers=2)
    # the child's models were used: a failed process would fall back to the fit in place
    assert "the fitting process failed" not in caplog.text
    assert alone.heldout == beside.heldout and alone.heldout["users"] > 0
    assert_equal_models(alone.models, beside.models)
    assert set(alone.models.sources) == {"cooccurrence", "transition", "sequence", "content",
                                         "popular"}


def test_a_failed_fitting_process_leaves_the_final_fit_to_the_caller(
        caplog: pytest.LogCaptureFixture) -> None:
    log = make_log(cycle_rows(users=5))
    with caplog.at_level(logging.WARNING, logger="service.training.service"):
        final = FinalFit(log, {"item_texts": TEXTS, "no_such_argument": 1})
        assert final.result() is None
        final.close()  # closing twice is harmless
    assert "the fitting process failed" in caplog.text
    assert "no_such_argument" in caplog.text


def test_a_fitting_process_that_cannot_start_leaves_the_final_fit_to_the_caller(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """`start()` can refuse (spawn from a script without a main guard does): the fit
    falls back to the caller with a warning instead of failing on the unstarted process."""
    import multiprocessing.context

    def refuse(self: object) -> None:
        raise RuntimeError("no process to be had")

    monkeypatch.setattr(multiprocessing.context.SpawnProcess, "start", refuse)
    log = make_log(cycle_rows(users=5))
    with caplog.at_level(logging.WARNING, logger="service.training.service"):
        final = FinalFit(log, {"item_texts": TEXTS})
        assert final.result() is None
        final.close()
    assert "the fitting process failed (RuntimeError: no process to be had)" in caplog.text


def test_a_fitting_process_that_cannot_be_made_closes_both_ends_of_its_pipe(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The process itself may not be made (arguments it cannot take): the fit falls
    back to the caller with a warning, and neither end of the pipe is left open."""
    import multiprocessing.context

    made: list[Any] = []
    real_pipe = multiprocessing.context.SpawnContext.Pipe

    def pipe(self: Any, duplex: bool = True) -> Any:
        ends = real_pipe(self, duplex)
        made.extend(ends)
        return ends

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise TypeError("no such process")

    monkeypatch.setattr(multiprocessing.context.SpawnContext, "Pipe", pipe)
    monkeypatch.setattr(multiprocessing.context.SpawnContext, "Process", refuse)
    log = make_log(cycle_rows(users=5))
    with caplog.at_level(logging.WARNING, logger="service.training.service"):
        final = FinalFit(log, {"item_texts": TEXTS})
        assert final.result() is None
    assert "the fitting process failed (TypeError: no such process)" in caplog.text
    assert len(made) == 2 and all(end.closed for end in made)


def test_under_a_time_budget_the_final_sequence_model_continues_from_the_held_out_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The final fit's sequence model starts from the held-out fit's weights and trains
    for a third of the budget; with a fixed number of epochs (the evaluation) it starts
    afresh."""
    import service.training.service as training

    calls: list[dict[str, Any]] = []
    real = fit_base_models

    def spy(log: Any, *args: Any, **kwargs: Any) -> BaseModels:
        models = real(log, *args, **kwargs)
        calls.append({**kwargs, "events": len(log), "models": models})
        return models

    monkeypatch.setattr(training, "fit_base_models", spy)
    log = make_log(cycle_rows(users=30) + cluster_rows(users=30))
    trained = train_log(log, TEXTS, sequence_seconds=3, heldout_users=20)
    assert trained.heldout["users"] > 0
    held, final = calls
    assert held["events"] < len(log) and final["events"] == len(log)
    assert held.get("sequence_start") is None
    assert final["sequence_start"] is held["models"].sequence
    assert final["sequence_seconds"] == pytest.approx(3 * WARM_SHARE)
    assert trained.models.sequence is not None and trained.models.sequence.warm_started

    calls.clear()
    by_epochs = train_log(log, TEXTS, sequence_epochs=2, heldout_users=20)
    assert [c.get("sequence_start") for c in calls] == [None, None]
    assert by_epochs.models.sequence is not None
    assert not by_epochs.models.sequence.warm_started


def test_under_a_time_budget_the_final_fit_stays_in_this_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Side by side, two time-budgeted sequence models would each train fewer epochs."""
    import service.training.service as training

    def refuse(*args: object) -> None:
        raise AssertionError("no fitting process under a time budget")

    monkeypatch.setattr(training, "FinalFit", refuse)
    trained = train_log(make_log(cycle_rows(users=30)), TEXTS, sequence_seconds=1,
                        heldout_users=10, workers=2)
    assert "sequence" in trained.models.sources
