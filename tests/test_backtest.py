"""The vectorbt strategy, baselines, metrics, criteria, JSON report and the backtest CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import quantstats as qs
import vectorbt as vbt
from typer.testing import CliRunner

from backtests.evaluate import backtest_settings, load_backtest_data, run_backtest
from rl_strategy.data import load_market
from rl_strategy.errors import RLTraderError
from rl_strategy.features import WARMUP
from rl_strategy.portfolio import YEAR_FREQ, simulate_portfolio
from rl_strategy.strategy import RLPolicy
from rltrader.cli import app

TICKERS = ["SPY", "QQQ", "IWM"]


@pytest.fixture(scope="module")
def test_data(source):
    return load_market(TICKERS, "2020-01-01", "2024-12-31", **source, history_days=WARMUP)


@pytest.fixture(scope="module")
def result(tiny_checkpoints, test_data):
    return run_backtest(RLPolicy.load(tiny_checkpoints[0]), test_data, fees=0.001, slippage=0.0005)


def test_helper_equals_hand_written_from_orders(test_data):
    rng = np.random.default_rng(0)
    w = pd.DataFrame(np.nan, index=test_data.close.index, columns=TICKERS)
    rows = rng.choice(len(w), 80, replace=False)
    w.iloc[rows] = rng.dirichlet([1, 1, 1, 1], size=80)[:, :3]
    pf = simulate_portfolio(w, test_data.open, test_data.close, fees=0.001, slippage=0.0005, execution="next_open")
    ref = vbt.Portfolio.from_orders(test_data.close, size=w.shift(1), price=test_data.open, size_type="targetpercent",
                                    group_by=True, cash_sharing=True, call_seq="auto", fees=0.001, slippage=0.0005,
                                    init_cash=1_000_000.0, freq="1D")
    np.testing.assert_allclose(pf.value().to_numpy(), ref.value().to_numpy(), rtol=0, atol=1e-6)
    assert pf.sharpe_ratio(year_freq=YEAR_FREQ) == pytest.approx(qs.stats.sharpe(pf.returns(), periods=252), rel=1e-12)


def test_metrics_equal_quantstats_for_every_policy(result, source):
    n = result.periods_per_year
    assert n == (252 if source["source"] == "csv" else 261)  # the calendar's own rows per year
    for name in result.table.index:
        r = result.returns[name]
        row = result.table.loc[name]
        if name != "ALL_CASH":
            assert row["sharpe"] == pytest.approx(qs.stats.sharpe(r, periods=n), abs=1e-9)
            assert row["sortino"] == pytest.approx(qs.stats.sortino(r, periods=n), abs=1e-9)
            assert row["calmar"] == pytest.approx(qs.stats.calmar(r, periods=n), abs=1e-9)
        assert row["cagr"] == pytest.approx(qs.stats.cagr(r, periods=n), abs=1e-9)
        assert row["volatility"] == pytest.approx(qs.stats.volatility(r, periods=n), abs=1e-9)
        assert row["max_drawdown"] == pytest.approx(qs.stats.max_drawdown(r), abs=1e-9)
        assert row["total_return"] == pytest.approx(qs.stats.comp(r), abs=1e-9)
        assert row["information_ratio"] == pytest.approx(qs.stats.information_ratio(r, result.benchmark), abs=1e-9)
        alpha_qs = qs.stats.greeks(r, result.benchmark, periods=n)["alpha"]
        assert row["alpha"] == pytest.approx((1 + alpha_qs / n) ** n - 1, abs=1e-9)
    cash = result.table.loc["ALL_CASH"]  # ranks with Sharpe 0: a losing policy ranks below cash
    assert cash["sharpe"] == 0.0 and cash["rank"] == 1 + (result.table["sharpe"] > 0).sum()


def test_baselines_and_parity(result):
    t = result.table
    assert set(t.index) == {"RL", "ALL_CASH", "ALL_SPY", "ALL_QQQ", "ALL_IWM", "EQ_BUY_HOLD", "EQ_MONTHLY", "RANDOM"}
    assert list(t["rank"]) == list(range(1, 9)) and t["sharpe"].dropna().is_monotonic_decreasing
    assert t.loc["ALL_SPY", "rebalances"] == 1 and t.loc["ALL_CASH", "rebalances"] == 0
    assert t.loc["EQ_MONTHLY", "rebalances"] == 60  # first decision day + one per month after it
    assert result.parity_max_rel_diff <= 1e-9
    spy = result.returns["ALL_SPY"]
    c = result.data.close["SPY"].loc[spy.index]
    # Buy and hold: after the first fill, ALL_SPY's daily returns are SPY's close-to-close returns.
    np.testing.assert_allclose(spy.iloc[2:].to_numpy(), (c / c.shift(1) - 1).iloc[2:].to_numpy(), atol=1e-7)


def test_close_execution_backtest_keeps_parity(tiny_checkpoints, test_data):
    res = run_backtest(RLPolicy.load(tiny_checkpoints[0]), test_data, execution="close", slippage=0.001)
    assert res.costs["execution"] == "close" and res.parity_max_rel_diff <= 1e-9


def test_target_weights_do_not_look_ahead(tiny_checkpoints, test_data):
    policy = RLPolicy.load(tiny_checkpoints[0])
    close, open_ = test_data.close, test_data.open
    base = policy.target_weights(close, open_)
    rng = np.random.default_rng(3)
    for t in rng.integers(WARMUP + 20, len(close) - 20, size=3):
        c2, o2 = close.copy(), open_.copy()
        c2.iloc[t + 1:] *= rng.uniform(0.7, 1.3, size=c2.iloc[t + 1:].shape)
        o2.iloc[t + 1:] *= rng.uniform(0.7, 1.3, size=o2.iloc[t + 1:].shape)
        other = policy.target_weights(c2, o2)
        pd.testing.assert_frame_equal(base.iloc[:t + 1], other.iloc[:t + 1])


def test_indicator_sweep_one_group_per_checkpoint(tiny_checkpoints, test_data):
    from rl_strategy.indicator import RLAllocation

    ckpts = [str(p) for p in tiny_checkpoints]
    res = RLAllocation.run(test_data.close, test_data.open, checkpoint=ckpts)
    w = res.weights
    assert list(w.columns.get_level_values(0).unique()) == ckpts
    for p in ckpts:
        expected = RLPolicy.load(p).target_weights(test_data.close, test_data.open)
        pd.testing.assert_frame_equal(w[p], expected, check_names=False)
    pf = simulate_portfolio(w, test_data.open, test_data.close)
    assert list(pf.value().columns) == ckpts


def test_guards(tiny_checkpoints, source, test_data):
    policy = RLPolicy.load(tiny_checkpoints[0])
    overlap = load_market(TICKERS, "2019-06-01", "2020-12-31", **source, history_days=WARMUP)
    with pytest.raises(RLTraderError, match="overlaps the checkpoint's training period"):
        run_backtest(policy, overlap)
    flagged = run_backtest(policy, overlap, allow_overlap=True)
    assert flagged.overlap_with_training
    other = load_market(["SPY", "QQQ", "TLT"], "2021-01-01", "2021-12-31", **source, history_days=WARMUP)
    with pytest.raises(RLTraderError, match="trained on SPY,QQQ,IWM"):
        run_backtest(policy, other)
    data = load_backtest_data(backtest_settings(policy.checkpoint, data_source=source["source"],
                                                csv_dir=source.get("csv_dir")), policy.assets)
    assert data.fingerprint == test_data.fingerprint  # the config's test period, 2020-2024


def test_cli_backtest_json_and_check(tiny_checkpoints, source_args, test_data, tmp_path):
    out = tmp_path / "eval.json"
    args = ["backtest", "--model", str(tiny_checkpoints[0].parent / "model_final_*.pt"), *source_args,
            "--output", str(out), "--weights-out", str(tmp_path / "w.csv")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    for key in ("model", "data", "costs", "policies", "criteria", "passed", "parity_max_rel_diff"):
        assert key in report
    days = test_data.close.index[test_data.history_rows():]  # 1258 real NYSE days, 1305 synthetic business days
    assert report["model"]["parameters"] == 109_841 and report["data"]["days"] == len(days)
    assert report["data"]["first_day"] == str(days[0].date()) and report["costs"]["execution"] == "next_open"
    fields = {"name", "rank", "sharpe", "sortino", "cagr", "total_return", "volatility", "max_drawdown", "turnover_annual",
              "time_in_market", "first_trade",
              "turnover", "rebalances", "alpha", "information_ratio"}
    assert all(fields <= set(p) for p in report["policies"]) and len(report["policies"]) == 8
    assert {c["name"] for c in report["criteria"]} == {"rl_sharpe_min", "rl_sharpe_vs_all_spy", "rl_turnover_max",
                                                       "rl_rank_max", "rl_greedy_representative"}
    for key in ("rl_sampled", "rolling_origins", "random_null", "readout", "warnings"):
        assert key in report
    assert report["readout"]["initial"] == "cash" and report["rl_sampled"]["n"] == 64
    assert report["random_null"]["n"] == 200 and report["rolling_origins"]["n"] == 60  # one per month, 2020-2024
    assert report["parity_max_rel_diff"] <= 1e-6
    assert (tmp_path / "eval.returns.csv").is_file() and (tmp_path / "w.csv").is_file()
    strict = CliRunner().invoke(app, args + ["--check"])
    assert strict.exit_code == (0 if report["passed"] else 1)


@pytest.mark.parametrize("passed", [True, False])
def test_cli_check_exit_code_follows_criteria(tiny_checkpoints, source_args, tmp_path, monkeypatch, passed):
    import backtests.evaluate as evaluate
    from backtests.criteria import Criterion

    monkeypatch.setattr(evaluate, "evaluate_criteria",
                        lambda table, thresholds: [Criterion("rl_rank_max", 2.0, 4.0, True),
                                                   Criterion("rl_sharpe_min", -0.1, 0.0, passed)])
    monkeypatch.setattr(evaluate, "greedy_representative",
                        lambda pct, thresholds: Criterion("rl_greedy_representative", pct, (0.0, 100.0), True))
    args = ["backtest", "--model", str(tiny_checkpoints[0]), *source_args, "--output", str(tmp_path / "e.json")]
    assert CliRunner().invoke(app, args).exit_code == 0  # without --check a failure is only reported
    assert CliRunner().invoke(app, args + ["--check"]).exit_code == (0 if passed else 1)
    assert json.loads((tmp_path / "e.json").read_text())["passed"] is passed


def test_criteria_by_hand():
    from backtests.criteria import evaluate_criteria
    from rl_strategy.settings import CriteriaSettings

    table = pd.DataFrame({"sharpe": [0.9, 1.2, 0.3], "turnover": [0.6, 0.0, 0.0], "rank": [2, 1, 3]},
                         index=["RL", "ALL_SPY", "ALL_IWM"])
    out = {c.name: c for c in evaluate_criteria(table, CriteriaSettings(min_sharpe=0.0, max_sharpe_gap_to_spy=0.5,
                                                                        max_turnover=0.5, max_rank=4))}
    assert out["rl_sharpe_min"].passed and out["rl_rank_max"].passed
    assert out["rl_sharpe_vs_all_spy"].threshold == pytest.approx(0.7) and out["rl_sharpe_vs_all_spy"].passed
    assert not out["rl_turnover_max"].passed and out["rl_turnover_max"].value == 0.6


def test_undefined_values_are_json_null():
    from backtests.criteria import Criterion

    c = Criterion("rl_sharpe_min", float("nan"), 0.0, False).to_dict()
    assert c["value"] is None and c["threshold"] == 0.0 and c["passed"] is False
    json.dumps(c, allow_nan=False)
