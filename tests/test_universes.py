"""Other universes from config alone: regime families, `train --tickers`, yfinance's two-row CSV
header and the criteria reference (a baseline, or a comparison-only ticker outside the universe)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from backtests.baselines import BaselineContext, baseline_builders
from backtests.criteria import evaluate_criteria
from rl_strategy.data import load_market
from rl_strategy.errors import RLTraderError
from rl_strategy.regimes import build_regime_table, rule_weights
from rl_strategy.settings import CriteriaSettings, Settings, settings_from_dict
from rltrader.cli import app

V2 = ("HOLD", "ALL_CASH", "ALL_SPY", "ALL_QQQ", "ALL_IWM", "PAIR_SPY_QQQ", "PAIR_SPY_IWM", "PAIR_QQQ_IWM", "EQ_WEIGHT",
      "TILT_SPY", "TILT_QQQ", "TILT_IWM", "HALF_SPY", "HALF_QQQ", "HALF_IWM", "HALF_EQ")
SECTORS = ("XLK", "XLF", "XLE", "XLV", "XLI", "XLP", "XLY", "XLU", "XLB", "XLRE", "XLC")
FAST = ["--samples", "2", "--null-draws", "2", "--origins", "none"]


# -- regime families ---------------------------------------------------------------------------------
def test_default_families_give_the_v2_table():
    table = build_regime_table(("SPY", "QQQ", "IWM"))
    assert table.names == V2
    np.testing.assert_array_equal(table.weights[V2.index("TILT_QQQ")], [0.25, 0.5, 0.25])
    np.testing.assert_array_equal(table.weights[V2.index("HALF_EQ")], np.full(3, 0.5 / 3))


def test_families_cap_the_table_in_rule_order():
    capped = build_regime_table(("A", "B", "C"), ["half", "all", "eq"])  # the list's order does not matter
    assert capped.names == ("HOLD", "ALL_CASH", "ALL_A", "ALL_B", "ALL_C", "EQ_WEIGHT", "HALF_A", "HALF_B", "HALF_C",
                            "HALF_EQ")
    assert build_regime_table(SECTORS).n_actions == 92  # 2 + 11 ALL + 55 PAIR + EQ + 11 TILT + 11 HALF + HALF_EQ
    assert build_regime_table(SECTORS, ["all", "half", "eq"]).n_actions == 26
    # Two assets: both TILTs are 50/50, the PAIR; without the pair family the first TILT stands in for it.
    assert build_regime_table(("TLT", "GLD"), ["tilt"]).names == ("HOLD", "ALL_CASH", "TILT_TLT")
    with pytest.raises(RLTraderError, match="unknown regime family 'pairs'"):
        build_regime_table(("A", "B"), ["pairs"])
    with pytest.raises(RLTraderError, match="one or more distinct families"):
        settings_from_dict(Settings().to_dict() | {"regimes": {"families": []}})


def test_settings_without_a_regimes_section_use_every_family():
    """Checkpoints written before `regimes` existed store no such section: they load with the v2 table."""
    raw = Settings().to_dict()
    del raw["regimes"]
    assert settings_from_dict(raw).regimes.families == ["all", "pair", "eq", "tilt", "half"]


def test_baselines_do_not_need_their_regimes_in_a_capped_table():
    """ALL_<a> and EQ_BUY_HOLD buy rule regimes that a "half"-only table lacks, and a one-asset
    universe, where the rule drops EQ_WEIGHT as a duplicate of ALL_<a>, still has EQ_BUY_HOLD."""
    for assets, families in ((("SPY", "TLT", "GLD"), ["half"]), (("SPY",), ["all", "pair", "eq", "tilt", "half"])):
        table = build_regime_table(assets, families)
        close = pd.DataFrame(100.0, index=pd.bdate_range("2021-01-04", periods=30), columns=list(assets))
        ctx = BaselineContext(close=close, regimes=table, first=2, rl_actions=pd.Series("", index=close.index))
        weights = {name: build(ctx) for name, build in baseline_builders(assets).items()}
        np.testing.assert_allclose(weights["EQ_BUY_HOLD"].iloc[2], np.full(len(assets), 1 / len(assets)))
        np.testing.assert_array_equal(weights[f"ALL_{assets[0]}"].iloc[2], rule_weights(assets, f"ALL_{assets[0]}"))
        assert weights["EQ_MONTHLY"].iloc[2].sum() == pytest.approx(1.0)
    assert "EQ_WEIGHT" not in build_regime_table(("SPY",)).names


def test_validation_needs_an_equal_weight_action(tmp_path):
    from training.config import load_settings
    from training.train import build_session

    settings = load_settings(None, {"data.tickers": ["QQQ", "IWM"], "regimes.families": ["all", "half"],
                                    "periods.train_start": "2015-01-01", "periods.train_end": "2016-12-31",
                                    "periods.val_start": "2016-07-01", "periods.val_end": "2016-12-31",
                                    "run.eval_horizon_days": 60, "ppo.n_envs": 8, "ppo.minibatches": 1,
                                    "env.episode_length": 32, "run.device": "cpu", "run.out": str(tmp_path)})
    with pytest.raises(RLTraderError, match="add eq to regimes.families"):
        build_session(settings)


# -- the criteria reference ----------------------------------------------------------------------------
def test_reference_rows_and_one_line_errors():
    table = pd.DataFrame({"sharpe": [0.9, 1.2, 0.4, np.nan], "turnover": [0.1, 0.0, 0.0, 0.0],
                          "rank": [2, 1, 3, np.nan]}, index=["RL", "EQ_BUY_HOLD", "ALL_TLT", "REF_SPY"])
    by = lambda ref: {c.name: c for c in evaluate_criteria(table, CriteriaSettings(reference=ref))}  # noqa: E731
    assert by("EQ_BUY_HOLD")["rl_sharpe_vs_eq_buy_hold"].threshold == pytest.approx(0.7)
    assert by("TLT")["rl_sharpe_vs_tlt"].threshold == pytest.approx(-0.1)  # a ticker of the universe: ALL_TLT
    for ref, why in (("ALL_SPY", "REF_SPY's Sharpe is nan"), ("ALL_GLD", "no row ALL_GLD")):
        with pytest.raises(RLTraderError, match=f"criteria.reference {ref} has no Sharpe on this data: {why}") as err:
            by(ref)
        assert "\n" not in str(err.value)


# -- end to end: train --tickers, backtest with the reference ------------------------------------------
@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The tiny networks here run faster on one thread than two fighting over busy cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(tmp_path: Path, extra: str = "") -> Path:
    """A tiny run: two years of training, one of test, two updates of a small network (seconds)."""
    path = tmp_path / "tiny.yaml"
    path.write_text("periods: {train_start: 2015-01-01, train_end: 2016-12-31, test_start: 2017-01-01, "
                    "test_end: 2017-12-31}\n"
                    "env: {episode_length: 32}\n"
                    "ppo: {n_envs: 32, n_steps: 32, minibatches: 1, epochs: 1, hidden: 16}\n"
                    "run: {timesteps: 2048, device: cpu, checkpoint_every: 1000}\n" + extra)
    return path


def _train(tmp_path: Path, tickers: str, *args: str, extra: str = "") -> Path:
    out = tmp_path / "ck"
    res = CliRunner().invoke(app, ["train", "--config", str(_config(tmp_path, extra)), "--tickers", tickers,
                                   "--out", str(out), "--quiet", *args])
    assert res.exit_code == 0, res.output
    (model,) = out.glob("model_final_*.pt")
    return model


def _backtest(tmp_path: Path, model: Path, *args: str) -> dict:
    out = tmp_path / "eval.json"
    res = CliRunner().invoke(app, ["backtest", "--model", str(model), "--output", str(out), *FAST, *args])
    assert res.exit_code == 0, res.output
    return json.loads(out.read_text())


def _unranked_rank_of_rl(report: dict) -> int:
    """RL's rank among the ranked rows only: what the rank criterion must see."""
    ranked = sorted((p for p in report["policies"] if not p.get("comparison_only")),
                    key=lambda p: -np.inf if p["sharpe"] is None else -p["sharpe"])
    return 1 + [p["name"] for p in ranked].index("RL")


def test_synthetic_universe_without_spy_trains_and_backtests(tmp_path):
    """QQQ,IWM,TLT,GLD from the CLI with a capped table: the default reference ALL_SPY is no baseline
    there, so SPY is loaded from the same source as a comparison-only REF_SPY row."""
    from rl_strategy.strategy import RLPolicy

    model = _train(tmp_path, "QQQ,IWM,TLT,GLD", extra="regimes: {families: [all, eq, half]}\n")
    policy = RLPolicy.load(model)
    assert policy.assets == ("QQQ", "IWM", "TLT", "GLD") and policy.regimes.n_actions == 2 + 4 + 1 + 5
    report = _backtest(tmp_path, model)
    rows = {p["name"]: p for p in report["policies"]}
    assert set(rows) == {"RL", "ALL_CASH", "ALL_QQQ", "ALL_IWM", "ALL_TLT", "ALL_GLD", "EQ_BUY_HOLD", "EQ_MONTHLY",
                         "RANDOM", "REF_SPY"}
    assert rows["REF_SPY"]["comparison_only"] and rows["REF_SPY"]["rank"] is None
    assert rows["REF_SPY"]["rebalances"] == 1 and rows["REF_SPY"]["sharpe"] is not None
    assert sorted(p["rank"] for p in report["policies"] if p["rank"] is not None) == list(range(1, 10))
    assert rows["RL"]["rank"] == _unranked_rank_of_rl(report)
    crit = {c["name"]: c for c in report["criteria"]}
    assert crit["rl_sharpe_vs_all_spy"]["threshold"] == pytest.approx(rows["REF_SPY"]["sharpe"] - 0.5)
    assert crit["rl_rank_max"]["value"] == rows["RL"]["rank"]
    # The reference's prices are SPY's from the synthetic market, bought and held with the same fee.
    spy = load_market(["SPY"], "2017-01-01", "2017-12-31").close["SPY"]
    ref = pd.read_csv(tmp_path / "eval.returns.csv", index_col=0, parse_dates=True)["REF_SPY"]
    np.testing.assert_allclose(ref.iloc[2:], spy.pct_change().reindex(ref.index).iloc[2:], rtol=1e-9)
    # A reference the source lacks, and one of the universe given bare, from the backtest's flag.
    res = CliRunner().invoke(app, ["backtest", "--model", str(model), "--reference", "XLK", *FAST])
    assert isinstance(res.exception, RLTraderError) and "\n" not in str(res.exception)
    assert str(res.exception).startswith("criteria.reference XLK needs XLK prices") and "synthetic" in str(res.exception)
    names = [c["name"] for c in _backtest(tmp_path, model, "--reference", "TLT")["criteria"]]
    assert "rl_sharpe_vs_tlt" in names


def test_real_universe_with_a_baseline_reference(tmp_path, market_dir):
    """SPY/TLT/GLD from the real CSVs, the gap criterion against EQ_BUY_HOLD (from the config)."""
    model = _train(tmp_path, "SPY,TLT,GLD", "--csv-dir", str(market_dir),
                   extra="criteria: {reference: EQ_BUY_HOLD}\n")
    report = _backtest(tmp_path, model)
    rows = {p["name"]: p for p in report["policies"]}
    assert not any(p.get("comparison_only") for p in report["policies"]) and report["data"]["signals"] == []
    crit = {c["name"]: c for c in report["criteria"]}
    assert crit["rl_sharpe_vs_eq_buy_hold"]["threshold"] == pytest.approx(rows["EQ_BUY_HOLD"]["sharpe"] - 0.5)


def test_real_universe_without_spy_loads_spy_as_reference(tmp_path, market_dir):
    """TLT/GLD/IWM from the real CSVs with the default reference: SPY.csv beside them is the yardstick."""
    model = _train(tmp_path, "TLT,GLD,IWM", "--csv-dir", str(market_dir))
    report = _backtest(tmp_path, model)
    rows = {p["name"]: p for p in report["policies"]}
    assert report["data"]["signals"] == ["SPY"] and rows["REF_SPY"]["comparison_only"]
    threshold = {c["name"]: c for c in report["criteria"]}["rl_sharpe_vs_all_spy"]["threshold"]
    assert threshold is not None and np.isfinite(threshold)
    assert rows["RL"]["rank"] == _unranked_rank_of_rl(report)


# -- yfinance's two-row header -------------------------------------------------------------------------
def _bars() -> pd.DataFrame:
    days = pd.bdate_range("2021-01-04", periods=5)
    close = np.array([10.0, 10.5, 10.25, 11.0, 10.75])
    return pd.DataFrame({"Close": close, "High": close + 0.5, "Low": close - 0.5, "Open": close - 0.125,
                         "Volume": [100.0, 200.0, 0.0, 400.0, 500.0]}, index=pd.DatetimeIndex(days, name="Date"))


def _two_row(bars: pd.DataFrame, ticker: str) -> str:
    """What `yf.download(ticker).to_csv()` writes: Price / Ticker header rows, then a Date row."""
    frame = bars.copy()
    frame.columns = pd.MultiIndex.from_product([list(bars.columns), [ticker]], names=["Price", "Ticker"])
    return frame.to_csv()


def test_two_row_header_loads_like_the_flat_layout(tmp_path):
    flat, two = tmp_path / "flat", tmp_path / "two"
    flat.mkdir(), two.mkdir()
    _bars().to_csv(flat / "XLK.csv")
    text = _two_row(_bars(), "XLK")
    assert text.splitlines()[:3] == ["Price,Close,High,Low,Open,Volume", "Ticker,XLK,XLK,XLK,XLK,XLK", "Date,,,,,"]
    (two / "XLK.csv").write_text(text)
    load = lambda folder: load_market(["XLK"], "2021-01-01", "2021-01-31", source="csv", csv_dir=folder)  # noqa: E731
    a, b = load(flat), load(two)
    pd.testing.assert_frame_equal(a.panel, b.panel)
    assert a.fingerprint == b.fingerprint
    (two / "XLF.csv").write_text(text)  # XLK's export saved as XLF
    with pytest.raises(RLTraderError, match=r"XLF.csv: its Ticker row holds XLK, not XLF") as err:
        load_market(["XLF"], "2021-01-01", "2021-01-31", source="csv", csv_dir=two)
    assert "\n" not in str(err.value)
