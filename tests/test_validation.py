"""Training that selects itself on a validation window it never trains on."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

from rl_strategy.checkpoint import load_checkpoint
from rl_strategy.errors import RLTraderError
from rl_strategy.portfolio import INIT_CASH, annualised_sharpe, simulate_portfolio
from training.config import load_settings
from training.train import build_session, run_training
from training.validation import Validator

SMALL = {"ppo.n_envs": 32, "ppo.n_steps": 16, "ppo.minibatches": 4, "env.episode_length": 32, "run.device": "cpu",
         "run.eval_samples": 3, "run.eval_horizon_days": 63}


def _settings(tmp_path, **extra):
    over = dict(SMALL) | {"run.out": str(tmp_path / "ck"), "run.timesteps": 32 * 16 * 4,
                          "periods.val_start": "2019-01-01", "periods.val_end": "2019-12-31"} | extra
    return load_settings(None, over)


def test_validation_decisions_never_enter_training(tmp_path):
    s = _settings(tmp_path)  # validation inside the training window 2015-2019
    session = build_session(s)
    assert session.data.panel.index[-1] < pd.Timestamp("2019-01-01")
    env = session.env
    assert env.market.dates[env.market.last_decision] < pd.Timestamp("2019-01-01")
    v = session.validator
    assert v.market.dates[v.origins[0]] >= pd.Timestamp("2019-01-01")
    assert v.market.dates[v.origins[-1] + 63] <= pd.Timestamp("2019-12-31")  # whole horizons inside the window


@pytest.mark.parametrize("periods,message", [
    ({"periods.val_start": "2019-01-01"}, "go together"),
    ({"periods.val_start": "2020-06-01", "periods.val_end": "2020-12-31"}, "inside the training window"),
    ({"periods.train_end": "2020-03-31", "periods.val_start": "2020-01-01", "periods.val_end": "2020-06-30"},
     "must not overlap the test window"),
])
def test_validation_window_rules(periods, message):
    with pytest.raises(RLTraderError, match=message):
        load_settings(None, periods)


def test_selection_keeps_the_checkpoint_with_the_best_recorded_score(tmp_path):
    result = run_training(build_session(_settings(tmp_path, **{"run.eval_every": 1})))
    with open(result.metrics_csv) as fh:
        rows = [r for r in csv.DictReader(fh) if r["val_score"]]
    assert len(rows) == 4
    scores = [float(r["val_score"]) for r in rows]
    best_update = int(rows[int(np.argmax(scores))]["update"])
    best = load_checkpoint(result.best_checkpoint)
    assert result.best_checkpoint.name.startswith("model_best_") and best.progress.updates == best_update
    assert result.best_score == max(scores)


def test_patience_stops_after_evaluations_without_improvement(tmp_path, monkeypatch):
    scores = iter([0.5, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1, 0.0])
    monkeypatch.setattr(Validator, "evaluate", lambda self, policy: {"val_score": next(scores)})
    s = _settings(tmp_path, **{"run.eval_every": 1, "run.patience": 2, "run.timesteps": 32 * 16 * 8})
    result = run_training(build_session(s))
    assert result.stopped_early and len(result.history) == 4  # 0.5, 0.7 (best), 0.6, 0.4: two without a gain
    assert result.best_score == 0.7 and load_checkpoint(result.best_checkpoint).progress.updates == 2


def test_validation_equal_weight_sharpe_equals_vectorbt(tmp_path):
    """The score's benchmark leg, replayed in the batched env, equals vectorbt's equal weight bought at
    each origin and held for the horizon, with the same costs and the project's one Sharpe."""
    session = build_session(_settings(tmp_path))
    v = session.validator
    scores = v.evaluate(session.trainer.policy)
    close, open_ = v.data.close, v.data.open
    sharpes = []
    for r in v.origins:
        w = pd.DataFrame(np.nan, index=close.index, columns=close.columns)
        w.iloc[r] = 1.0 / 3
        pf = simulate_portfolio(w, open_, close, fees=session.settings.env.fees, execution="next_open")
        window = pf.returns().iloc[r:r + 64]  # the origin's close and its 63 decisions' outcomes
        sharpes.append(annualised_sharpe(window.to_frame(), v.periods).iloc[0])
        assert pf.value().iloc[r - 1] == INIT_CASH
    assert scores["val_ew_sharpe"] == pytest.approx(float(np.median(sharpes)), abs=1e-9)
    assert np.isfinite(scores["val_score"])
    assert v.evaluate(session.trainer.policy) == scores  # deterministic for a given policy
