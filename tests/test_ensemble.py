"""Seed ensembles against known answers: an ensemble of one policy twice is that policy, two seeds
average their probabilities, incompatible or edited files are refused, `train_seeds` lays out its
runs and its ensemble backtests like a single checkpoint."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import training.ensemble as ensemble_module
from backtests.evaluate import EvalOptions, run_backtest
from rl_strategy.checkpoint import load_checkpoint, save_checkpoint
from rl_strategy.data import load_market
from rl_strategy.errors import RLTraderError
from rl_strategy.features import WARMUP
from rl_strategy.strategy import RLPolicy
from training.config import load_settings
from training.ensemble import selected_checkpoint, train_seeds, write_ensemble
from training.train import build_session

SEEDS = [1, 2]


def _settings(out: Path, **overrides):
    """Tiny synthetic-data settings (two updates)."""
    return load_settings(None, {"data.source": "synthetic", "ppo.n_envs": 32, "ppo.n_steps": 16, "ppo.minibatches": 4,
                                "env.episode_length": 32, "run.timesteps": 32 * 16 * 2, "run.device": "cpu",
                                "run.seed": 99, "run.out": str(out)} | overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    settings = _settings(tmp_path_factory.mktemp("seeds") / "run")
    seen: list[tuple[int, int]] = []
    result = train_seeds(settings, SEEDS, on_update=lambda stats: seen.append((stats["seed"], stats["update"])))
    return SimpleNamespace(settings=settings, result=result, seen=seen)


@pytest.fixture(scope="module")
def panel():
    return load_market(["SPY", "QQQ", "IWM"], "2020-01-01", "2021-06-30", source="synthetic", history_days=WARMUP)


def _one_line_error(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    return text


def test_train_seeds_writes_member_runs_and_an_ensemble(trained):
    out, result = Path(trained.settings.run.out), trained.result
    assert not result.interrupted and result.seeds == SEEDS
    assert trained.settings.run.seed == 99 and trained.settings.run.out == str(out)  # the caller's settings stay
    assert trained.seen == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert result.members == [r.final_checkpoint for r in result.results]  # no validation: the final checkpoints
    for seed, member in zip(SEEDS, result.members, strict=True):
        assert member.parent == out / f"seed_{seed}" and member.name.startswith("model_final_")
    assert result.ensemble.parent == out and re.fullmatch(r"model_ensemble_\d{8}_\d{6}\.pt", result.ensemble.name)

    ens = load_checkpoint(result.ensemble)
    assert ens.is_ensemble and ens.payload["ensemble"] == {
        "rule": "mean_probs", "members": [f"seed_{k}/{m.name}" for k, m in zip(SEEDS, result.members, strict=True)]}
    singles = [load_checkpoint(m) for m in result.members]
    for seed, member, single in zip(SEEDS, ens.members, singles, strict=True):
        assert member.path == single.path and "trainer" not in member.payload
        assert member.settings.run.seed == seed and member.settings.run.out == str(out / f"seed_{seed}")
        assert member.model_state.keys() == single.model_state.keys()
        assert all(torch.equal(member.model_state[k], single.model_state[k]) for k in single.model_state)
    assert not torch.equal(singles[0].model_state["policy_head.weight"], singles[1].model_state["policy_head.weight"])
    # no trainer state: smaller than its members' files together
    assert result.ensemble.stat().st_size < sum(m.stat().st_size for m in result.members)

    # one policy's accessors: the first member's settings and spec, parameters and progress summed
    assert ens.settings == singles[0].settings and ens.assets == ("SPY", "QQQ", "IWM")
    assert ens.training_data == singles[0].training_data
    assert ens.spec.parameters == 2 * 109_841 and ens.spec.obs_dim == 64 and ens.spec.hidden == 128
    assert ens.progress.timesteps == 2 * singles[0].progress.timesteps == 2 * 32 * 16 * 2
    assert ens.progress.updates == 4
    with pytest.raises(RLTraderError, match="no trainer state"):
        ens.trainer_state  # noqa: B018 - an ensemble is not resumed
    with pytest.raises(RLTraderError, match="ensemble of 2 policies"):
        ens.model_state  # noqa: B018


def test_ensemble_backtests_like_a_single_checkpoint(trained, panel):
    policy = RLPolicy.load(Path(trained.settings.run.out) / "model_ensemble_*.pt")
    assert policy.checkpoint.is_ensemble and policy.net.n_actions == 16
    result = run_backtest(policy, panel, options=EvalOptions(samples=4, null_draws=4, horizon_days=40))
    assert result.parity_max_rel_diff <= 1e-9
    assert "RL" in result.table.index and np.isfinite(result.rl_behaviour["mean_entropy"])
    assert result.checkpoint.path == trained.result.ensemble


def test_ensemble_of_one_checkpoint_twice_is_that_checkpoint(trained, panel, tmp_path):
    member = trained.result.members[0]
    single = RLPolicy.load(member)
    twice = RLPolicy.load(write_ensemble([member, member], tmp_path / "twice.pt"))
    close, open_ = panel.close, panel.open
    a = single.run(close, open_, start=panel.period_start)
    b = twice.run(close, open_, start=panel.period_start)
    pd.testing.assert_frame_equal(a.weights, b.weights)
    pd.testing.assert_series_equal(a.actions, b.actions)
    pd.testing.assert_series_equal(a.equity, b.equity)

    kw = dict(names=["g", "s1", "s2", "s3"], starts=[panel.period_start] * 4, sample=[False, True, True, True],
              seeds=[0, 7, 8, 9])
    pa, pb = single.paths(close, open_, **kw), twice.paths(close, open_, **kw)
    pd.testing.assert_frame_equal(pa.weights, pb.weights)
    pd.testing.assert_frame_equal(pa.actions, pb.actions)
    pd.testing.assert_frame_equal(pa.equity, pb.equity)
    # the probabilities themselves agree to float32 rounding (log of a mean of two equal softmaxes)
    pd.testing.assert_frame_equal(pa.max_prob, pb.max_prob, check_exact=False, atol=1e-6, rtol=0)
    assert not pa.actions["s1"].equals(pa.actions["s2"])  # the sampled paths do differ


def test_two_seeds_average_their_probabilities(trained):
    ens = load_checkpoint(trained.result.ensemble).policy()
    members = [load_checkpoint(m).policy() for m in trained.result.members]
    gen = torch.Generator().manual_seed(0)
    obs = [torch.randn(5, ens.obs_dim, generator=gen) for _ in range(2)]
    state = ens.initial_state(5)
    assert state.shape == (2, 1, 5, 128) and not state.any()
    states = [m.initial_state(5) for m in members]
    with torch.no_grad():
        for x in obs:  # two steps: each member carries its own recurrent state
            logits, value, state = ens.step(x, state)
            outs = [m.step(x, s) for m, s in zip(members, states, strict=True)]
            states = [s for _, _, s in outs]
            p1, p2 = (torch.softmax(lg, -1) for lg, _, _ in outs)
            assert not torch.allclose(p1, p2, atol=1e-7, rtol=0)
            torch.testing.assert_close(torch.softmax(logits, -1), (p1 + p2) / 2, atol=1e-7, rtol=1e-6)
            torch.testing.assert_close(logits.exp(), (p1 + p2) / 2, atol=1e-7, rtol=1e-6)
            torch.testing.assert_close(value, (outs[0][1] + outs[1][1]) / 2)
            assert torch.equal(state, torch.stack(states))
            assert torch.equal(logits.argmax(-1), ((p1 + p2) / 2).argmax(-1))


def test_members_that_differ_are_refused(trained, tmp_path):
    member = trained.result.members[0]
    for overrides, what in (({"data.tickers": ["SPY", "QQQ"]}, "assets"), ({"env.fees": 0.002}, "fees"),
                            ({"periods.train_start": "2016-01-01"}, "training period")):
        other = save_checkpoint(build_session(_settings(tmp_path / what, **overrides)).payload(), tmp_path / "o.pt")
        with pytest.raises(RLTraderError, match=f"ensemble members differ in {what}") as exc:
            write_ensemble([member, other], tmp_path / "bad.pt")
        _one_line_error(exc)
        assert not (tmp_path / "bad.pt").exists()
    with pytest.raises(RLTraderError, match="already an ensemble"):
        write_ensemble([trained.result.ensemble, member], tmp_path / "nested.pt")

    # a file with a valid digest but members that differ is refused on loading too
    raw = torch.load(trained.result.ensemble, weights_only=True)
    raw["members"][1]["spec"]["assets"] = ["SPY", "QQQ", "TLT"]
    path = save_checkpoint({k: v for k, v in raw.items() if k not in ("format", "digest")}, tmp_path / "forged.pt")
    with pytest.raises(RLTraderError, match="differ in assets") as exc:
        load_checkpoint(path)
    _one_line_error(exc)


def test_edited_ensembles_are_refused(trained, tmp_path):
    raw = torch.load(trained.result.ensemble, weights_only=True)
    for edit in (lambda p: p["members"][1]["model"]["policy_head.bias"].add_(1.0),
                 lambda p: p["ensemble"]["members"].__setitem__(0, "elsewhere.pt")):
        edited = torch.load(trained.result.ensemble, weights_only=True)
        edit(edited)
        torch.save(edited, tmp_path / "edited.pt")
        with pytest.raises(RLTraderError, match="integrity"):
            load_checkpoint(tmp_path / "edited.pt")

    body = {k: v for k, v in raw.items() if k not in ("format", "digest")}
    save_checkpoint(body | {"ensemble": {"rule": "median", "members": raw["ensemble"]["members"]}}, tmp_path / "r.pt")
    with pytest.raises(RLTraderError, match="unknown ensemble rule"):
        load_checkpoint(tmp_path / "r.pt")
    save_checkpoint(body | {"members": raw["members"][:1]}, tmp_path / "m.pt")
    with pytest.raises(RLTraderError, match="malformed ensemble"):
        load_checkpoint(tmp_path / "m.pt")


def test_train_seeds_uses_each_members_best_checkpoint(trained, monkeypatch, tmp_path):
    """With validation, a member's best checkpoint (not its final one) goes into the ensemble."""
    final, best = trained.result.members
    calls = []

    def fake_run(settings, on_update=None):
        calls.append((settings.run.seed, settings.run.out))
        on_update({"update": 1})
        return SimpleNamespace(final_checkpoint=final, best_checkpoint=best, interrupted=False)

    monkeypatch.setattr(ensemble_module, "build_session", lambda settings: settings)
    monkeypatch.setattr(ensemble_module, "run_training", fake_run)
    seen = []
    settings = _settings(tmp_path / "out")
    result = train_seeds(settings, [3, 5], on_update=seen.append)
    assert calls == [(3, str(tmp_path / "out" / "seed_3")), (5, str(tmp_path / "out" / "seed_5"))]
    assert seen == [{"update": 1, "seed": 3}, {"update": 1, "seed": 5}]
    assert result.members == [best, best] and selected_checkpoint(SimpleNamespace(final_checkpoint=final)) == final
    assert load_checkpoint(result.ensemble).payload["ensemble"]["members"] == [str(best.resolve())] * 2

    def interrupted_run(settings, on_update=None):
        return SimpleNamespace(final_checkpoint=final, best_checkpoint=None, interrupted=settings.run.seed == 5)

    monkeypatch.setattr(ensemble_module, "run_training", interrupted_run)
    stopped = train_seeds(_settings(tmp_path / "cut"), [3, 5, 7])
    assert stopped.interrupted and stopped.ensemble is None and stopped.members == [final]
    assert len(stopped.results) == 2 and not list((tmp_path / "cut").glob("model_ensemble_*"))
    with pytest.raises(RLTraderError, match="distinct seeds"):
        train_seeds(settings, [1, 1])
