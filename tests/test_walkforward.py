"""Walk-forward on the synthetic market with a tiny PPO: fold windows that never let a policy test on a
day it trained or was selected on, stitched curves equal to vectorbt on the concatenated orders with
holdings carried across folds (or cash with --restart-each-fold), resume, retried and reported failures,
the same results from a worker, Ray and the main process, and the command end to end."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from backtests.backends import BackendOptions, run_job
from backtests.walkforward import (
    JSON_FILE,
    WalkforwardOptions,
    fold_windows,
    pair_dir,
    run_walkforward,
    train_pair,
)
from rl_strategy.checkpoint import load_checkpoint
from rl_strategy.errors import RLTraderError
from rl_strategy.portfolio import INIT_CASH, annualised_sharpe, simulate_portfolio
from rl_strategy.strategy import RLPolicy
from rltrader.cli import app
from training.config import load_settings

TINY = {"data.source": "synthetic", "ppo.n_envs": 16, "ppo.n_steps": 16, "ppo.minibatches": 4,
        "env.episode_length": 32, "ppo.hidden": 32, "run.timesteps": 1024, "run.device": "cpu", "run.eval_every": 2,
        "run.eval_samples": 2, "run.eval_horizon_days": 40}
# two folds: train 2010-2011 (validate 2011), test 2012; train 2011-2012 (validate 2012), test 2013 clipped at June
START, END = "2010-01-01", "2013-06-30"


def _plan(out: Path, **kwargs) -> WalkforwardOptions:
    return WalkforwardOptions(**{"start": START, "end": END, "out": str(out), "train_years": 2, "val_years": 1,
                                 "test_years": 1, "seeds": 2, "samples": 4, "null_draws": 8} | kwargs)


@pytest.fixture(scope="module")
def settings():
    return load_settings(None, TINY)


@pytest.fixture(scope="module")
def run(settings, tmp_path_factory):
    """The tiny walk-forward, trained by the local pool (2 folds x 2 seeds, two workers)."""
    out = tmp_path_factory.mktemp("wf")
    progress: list[tuple[int, int]] = []
    result = run_walkforward(settings, _plan(out), BackendOptions(workers=2),
                             on_progress=lambda done, total: progress.append((done, total)))
    return SimpleNamespace(out=out, result=result, progress=progress)


def raising_task(**job) -> dict:
    """Fails for (fold 1, seed 2) after noting the call; any other pair trains normally."""
    if (job["fold"]["index"], job["seed"]) != (1, 2):
        return train_pair(**job)
    with open(Path(job["out"]) / "calls.txt", "a") as fh:
        fh.write("call\n")
    raise RuntimeError("boom in the task\nsecond line")


def _one_line(excinfo) -> str:
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


def test_fold_windows_are_disjoint_in_order_and_clipped():
    folds = fold_windows("2005-01-01", "2024-06-30", train_years=5, val_years=1, test_years=1)
    assert len(folds) == 15 and [f.index for f in folds] == list(range(15))
    day = pd.Timedelta(days=1)
    for f in folds:
        train_start, train_end = pd.Timestamp(f.train_start), pd.Timestamp(f.train_end)
        val_start, val_end = pd.Timestamp(f.val_start), pd.Timestamp(f.val_end)
        test_start, test_end = pd.Timestamp(f.test_start), pd.Timestamp(f.test_end)
        assert train_start < val_start <= val_end == train_end == test_start - day < test_end
        assert val_start == test_start - pd.DateOffset(years=1) and train_start == test_start - pd.DateOffset(years=5)
    for a, b in zip(folds, folds[1:], strict=False):  # test windows follow each other without overlap
        assert pd.Timestamp(b.test_start) == pd.Timestamp(a.test_end) + day
        assert pd.Timestamp(b.train_start) == pd.Timestamp(a.train_start) + pd.DateOffset(years=1)
    assert (folds[0].test_start, folds[-1].test_start, folds[-1].test_end) == ("2010-01-01", "2024-01-01", "2024-06-30")
    assert fold_windows("2005-01-01", "2024-12-31", 5, 0, 2, 3)[1].test_start == "2013-01-01"  # step 3, test 2
    assert fold_windows("2005-01-01", "2024-12-31", 5, 0)[0].val_start is None
    assert fold_windows("2005-01-01", "2024-01-20", 5)[-1].test_end == "2023-12-31"  # 20 days left: no fold


def test_bad_input_is_one_line():
    cases = [(dict(start="2010-01-01", end="2009-01-01"), "must be after --start"),
             (dict(start="2010-13-01", end="2013-01-01"), "YYYY-MM-DD"),
             (dict(start="2010-01-01", end="2014-12-31", train_years=5), "too short for one fold"),
             (dict(start="2005-01-01", end="2024-12-31", test_years=2, step_years=1), "test some days twice"),
             (dict(start="2005-01-01", end="2024-12-31", val_years=5), "--val-years"),
             (dict(start="2005-01-01", end="2010-01-20", train_years=5), "too short for one fold")]
    for kwargs, message in cases:
        with pytest.raises(RLTraderError, match=message) as exc:
            fold_windows(**kwargs)
        _one_line(exc)
    with pytest.raises(RLTraderError, match="--backend must be one of local, ray") as exc:
        BackendOptions(backend="spark").check()
    _one_line(exc)
    with pytest.raises(RLTraderError, match="--seeds") as exc:
        _plan(Path("x"), seeds=0).folds()
    _one_line(exc)


def test_no_policy_decides_on_a_day_it_trained_or_was_selected_on(run, settings):
    folds = run.result.folds
    assert [(f.test_start, f.test_end) for f in folds] == [("2012-01-01", "2012-12-31"), ("2013-01-01", "2013-06-30")]
    assert run.progress[0] == (0, 4) and run.progress[-1] == (4, 4)
    report = run.result.report
    for f, entry in zip(folds, report["folds"], strict=True):
        assert entry["train_decisions_end"] < f.val_start <= f.val_end < f.test_start  # ISO strings order as dates
        for seed in ("1", "2"):
            bt = entry["seeds"][seed]
            assert f.test_start <= bt["first_day"] and bt["last_day"] <= f.test_end  # decisions only in the test window
            ckpt = load_checkpoint(run.out / bt["checkpoint"])
            assert bt["selected"] == "best" and Path(bt["checkpoint"]).name.startswith("model_best_")
            assert str(ckpt.training_data.last_day)[:10] <= entry["train_decisions_end"]
            assert ckpt.settings.periods.val_start == f.val_start and ckpt.settings.run.seed == int(seed)
        assert entry["ensemble"]["members"] == [1, 2]
    # the stitched account trades only on test days, each fold's orders by that fold's policy
    st = run.result.stitched
    days = st.data.close.index
    ordered = st.weights["RL"].notna().any(axis=1)
    assert days[ordered.to_numpy()].min() >= pd.Timestamp(folds[0].test_start)
    for (a, b), f in zip(st.rows, folds, strict=True):
        assert days[a] >= pd.Timestamp(f.test_start) and days[a - 1] < pd.Timestamp(f.test_start)
        assert days[b] <= pd.Timestamp(f.test_end) and not ordered.iloc[b]  # the last day holds: no order
    assert days[-1] <= pd.Timestamp(END)


def test_json_report_holds_every_section(run):
    report = json.loads((run.out / JSON_FILE).read_text())
    assert report == run.result.report
    assert set(report) >= {"folds", "stitched", "significance", "failed", "settings", "wall_seconds"}
    assert report["failed"] == [] and report["ran"] == [[0, 1], [0, 2], [1, 1], [1, 2]] and report["resumed"] == []
    fold = report["folds"][1]
    assert set(fold) >= {"train_start", "train_end", "val_start", "val_end", "test_start", "test_end", "seeds",
                         "ensemble", "best_baseline", "criteria", "passed", "null_percentile"}
    seed = fold["seeds"]["1"]
    assert set(seed["rl"]) >= {"sharpe", "total_return", "max_drawdown", "turnover"}
    assert set(seed["sampled"]) >= {"sharpe_median", "sharpe_p05", "sharpe_p95", "greedy_sharpe_percentile"}
    assert 0 <= seed["null"]["rl_sharpe_percentile"] <= 100 and seed["parity_max_rel_diff"] < 1e-9
    st = report["stitched"]
    assert set(st["policies"]) == {"RL", "RL_SEED_1", "RL_SEED_2", "ALL_CASH", "ALL_SPY", "ALL_QQQ", "ALL_IWM",
                                   "EQ_BUY_HOLD", "EQ_MONTHLY"}
    assert st["mode"] == "carry" and st["parity_max_rel_diff"] < 1e-9 and st["held_folds"] == {}
    assert st["sampled"]["RL"]["n"] == 4 and set(st["sampled"]["RL"]) >= {"sharpe", "total_return", "max_drawdown"}
    sig = report["significance"]
    for key in ("psr_vs_zero", "psr_vs_benchmark", "dsr", "n_trials", "bootstrap_ci_sharpe_diff", "spa_pvalue"):
        assert key in sig
    assert sig["n_trials"] == 4 and sig["benchmark"] == "EQ_BUY_HOLD" and sig["readout"].startswith("RL:")
    assert len(sig["null_percentile_per_fold"]) == 2
    assert report["settings"]["walkforward"]["seeds"] == 2 and report["settings"]["config"]["ppo"]["hidden"] == 32


def _concatenated(st, track: str, path: str) -> pd.DataFrame:
    """The track's orders built fold by fold here: each fold's policy replayed from the weights the
    stitching says its account held at the fold's start (sampled path k draws with the fold's k+1-th seed)."""
    close, open_ = st.data.close, st.data.open
    frame = pd.DataFrame(np.nan, index=close.index, columns=close.columns)
    column = 0 if path == "greedy" else int(path[1:]) + 1
    for k, (a, b) in enumerate(st.rows):
        policy = RLPolicy.load(st.policies[track][k])
        lo = a - policy.warmup
        seed = int(np.random.SeedSequence(k).generate_state(column + 1)[column])
        p = policy.paths(close.iloc[lo:b + 1], open_.iloc[lo:b + 1], names=[path], starts=[close.index[a]],
                         sample=[path != "greedy"], seeds=[seed], initial=st.start_weights[track][k].loc[path].to_numpy())
        frame.iloc[a:b + 1] = p.weights[path].iloc[a - lo:].to_numpy()
    return frame


def test_stitched_curve_is_vectorbt_on_the_concatenated_orders_with_carried_holdings(run):
    st = run.result.stitched
    a0, (a1, _) = st.rows[0][0], st.rows[1]
    for track, path, column in (("RL", "greedy", "RL"), ("RL_SEED_1", "S2", "RL_SEED_1:S2")):
        weights = _concatenated(st, track, path)
        pd.testing.assert_frame_equal(weights, st.weights[track][path], check_names=False)
        pf = simulate_portfolio(weights, st.data.open, st.data.close, fees=0.001)
        value = pf.value() / INIT_CASH
        np.testing.assert_allclose(st.equity[column].to_numpy(), value.iloc[a0:].to_numpy(), rtol=1e-9, atol=0)
        np.testing.assert_allclose(st.returns[column].to_numpy(), pf.returns().iloc[a0:].to_numpy(), rtol=0, atol=1e-12)
        # fold 2 starts from what fold 1 ended holding (vectorbt's weights at the close before), not from cash
        held = (pf.asset_value(group_by=False).iloc[a1 - 1] / pf.value().iloc[a1 - 1]).to_numpy()
        np.testing.assert_allclose(st.start_weights[track][1].loc[path].to_numpy(), held, rtol=0, atol=1e-12)
    greedy_start = st.start_weights["RL"][1]
    assert greedy_start.sum(axis=1).max() > 0.1  # invested at the boundary, so carrying it is tested
    assert not st.start_weights["RL"][0].to_numpy().any()  # the first fold starts in cash
    invested = greedy_start.loc["greedy"].sum() > 0
    assert (st.equity["RL"].iloc[a1 - a0] != st.equity["RL"].iloc[a1 - 1 - a0]) == invested  # no jump to cash


def test_restart_each_fold_starts_every_fold_in_cash_and_resumes_without_training(run, settings):
    mtimes = {p: p.stat().st_mtime_ns for p in run.out.glob("fold_*/seed_*/result.json")}
    restarted = run_walkforward(settings, _plan(run.out, restart_each_fold=True), BackendOptions(workers=2))
    assert restarted.report["ran"] == [] and len(restarted.report["resumed"]) == 4
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # nothing retrained or rewritten
    with pytest.raises(RLTraderError, match="written for other settings") as exc:  # never reused for another run
        run_walkforward(settings, _plan(run.out, samples=3))
    _one_line(exc)
    st, carried = restarted.stitched, run.result.stitched
    assert st.parity_max_rel_diff < 1e-9 and restarted.report["stitched"]["mode"] == "restart"
    assert not st.start_weights["RL"][1].to_numpy().any()
    (a0, b0), (a1, b1) = st.rows
    assert st.equity["RL"].iloc[a1 - a0] == st.equity["RL"].iloc[a1 - 1 - a0]  # a day in cash: the first order fills next
    for k, (a, b) in enumerate(st.rows):  # from cash, a fold's stitched returns are its own backtest's
        fold = restarted.report["folds"][k]["ensemble"]  # (annualised with the fold panel's own calendar)
        sharpe = annualised_sharpe(st.returns[["RL"]].iloc[a - a0:b - a0 + 1], fold["periods_per_year"]).iloc[0]
        assert sharpe == pytest.approx(fold["rl"]["sharpe"], rel=1e-9, abs=1e-12)
    pd.testing.assert_frame_equal(st.returns.iloc[:b0 - a0 + 1], carried.returns.iloc[:b0 - a0 + 1])
    assert not st.returns["RL"].iloc[a1 - a0:].equals(carried.returns["RL"].iloc[a1 - a0:])


def test_a_failing_task_is_retried_once_then_reported(run, settings, tmp_path):
    out = tmp_path / "wf"
    shutil.copytree(run.out, out)
    (pair_dir(out, 1, 2) / "result.json").unlink()
    result = run_walkforward(settings, _plan(out), BackendOptions(workers=1), task=raising_task)
    assert (out / "calls.txt").read_text().count("call") == 2  # the first try and one retry
    assert result.report["failed"] == [{"fold": 1, "seed": 2, "error": "RuntimeError: boom in the task"}]
    fold = result.report["folds"][1]
    assert fold["failed_seeds"] == [2] and list(fold["seeds"]) == ["1"] and fold["ensemble"]["members"] == [1]
    assert result.report["stitched"]["held_folds"] == {"RL_SEED_2": [1]}  # stitched with what exists, and said so
    st = result.stitched
    a1, b1 = st.rows[1]
    assert st.weights["RL_SEED_2"].iloc[a1:b1 + 1].isna().all().all()  # the account holds without a policy
    assert st.parity_max_rel_diff < 1e-9


def test_a_pair_trains_the_same_in_a_worker_and_in_the_main_process(run, settings, tmp_path):
    job = {"settings": settings.to_dict(), "fold": asdict(run.result.folds[0]), "seed": 1, "out": str(tmp_path),
           "samples": 4, "null_draws": 8}
    here = run_job(train_pair, job, cpus_per_task=1)
    there = json.loads((pair_dir(run.out, 0, 1) / "result.json").read_text())
    a, b = load_checkpoint(tmp_path / here["checkpoint"]), load_checkpoint(run.out / there["checkpoint"])
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in b.model_state)
    assert json.loads(json.dumps(here["backtest"])) == there["backtest"]


def test_ray_backend_gives_the_local_results(run, settings, tmp_path):
    pytest.importorskip("ray", reason="the ray backend needs the optional extra: pip install -e '.[ray]'")
    result = run_walkforward(settings, _plan(tmp_path, seeds=1), BackendOptions(backend="ray", workers=2))
    assert result.report["failed"] == [] and result.report["ran"] == [[0, 1], [1, 1]]
    for k in (0, 1):
        ray_pair = json.loads((pair_dir(tmp_path, k, 1) / "result.json").read_text())
        local_pair = json.loads((pair_dir(run.out, k, 1) / "result.json").read_text())
        assert ray_pair["backtest"] == local_pair["backtest"]
        a, b = load_checkpoint(tmp_path / ray_pair["checkpoint"]), load_checkpoint(run.out / local_pair["checkpoint"])
        assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in b.model_state)
    assert result.report["stitched"]["policies"]["RL_SEED_1"] == run.result.report["stitched"]["policies"]["RL_SEED_1"]


def test_cli_end_to_end(settings, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(settings.to_dict()))
    out = tmp_path / "wf"
    args = ["walkforward", "--config", str(config), "--start", START, "--end", "2012-12-31", "--train-years", "2",
            "--seeds", "1", "--samples", "2", "--null-draws", "2", "--workers", "1", "--out", str(out), "--quiet"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads((out / JSON_FILE).read_text())
    assert set(report) >= {"folds", "stitched", "significance", "failed", "settings", "wall_seconds"}
    assert len(report["folds"]) == 1 and report["significance"]["n_trials"] == 1
    assert "Walk-forward folds" in res.output and "significance" in res.output
    page = (out / "walkforward.html").read_text()
    assert page.count("<img") == 3 and "Stitched metrics" in page
    bad = CliRunner().invoke(app, ["walkforward", "--start", "2012-01-01", "--end", "2011-01-01", "--out", str(out)])
    assert bad.exit_code == 1 and isinstance(bad.exception, RLTraderError)
    assert "\n" not in str(bad.exception)
