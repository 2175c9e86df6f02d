"""The tearsheet and comparison pages, rebuilt from a small fake saved report (no checkpoint)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtests.metrics import held_regimes
from reports.comparison import write_comparison
from reports.json_report import REGIME_COLUMN
from reports.tearsheet import write_tearsheet
from rl_strategy.errors import RLTraderError

POLICIES = ["RL", "ALL_CASH", "ALL_SPY", "ALL_QQQ", "EQ_BUY_HOLD", "RANDOM"]
RL_SHARPE = 1.2345678


def _metrics(name: str, rank: int, rng: np.random.Generator) -> dict:
    """One policy row as build_report writes it (ALL_CASH: Sharpe and Sortino 0, no Calmar, never trades)."""
    cash = name == "ALL_CASH"
    row = {
        "name": name, "rank": rank,
        "sharpe": 0.0 if cash else (RL_SHARPE if name == "RL" else float(rng.normal())),
        "sortino": 0.0 if cash else float(rng.normal()),
        "cagr": 0.0 if cash else 0.0812, "total_return": 0.0 if cash else 0.1034,
        "volatility": 0.0 if cash else 0.2011, "max_drawdown": 0.0 if cash else -0.1523,
        "calmar": None if cash else 0.53, "turnover": 0.0 if cash else 0.0042,
        "turnover_annual": 0.0 if cash else 1.0584,
        "rebalances": 0 if cash else 7, "alpha": 0.0 if cash else 0.011, "information_ratio": 0.02,
        "time_in_market": 0.0 if cash else 0.8765, "first_trade": None if cash else "2021-03-02",
    }
    if name == "RL":
        row |= {"mean_entropy": 1.8981, "mean_max_prob": 0.40957, "max_entropy": 2.7726,
                "regime_share": {"ALL_CASH": 0.1333, "ALL_SPY": 0.2667, "TILT_QQQ": 0.6}}
    return row


#: Per-origin Sharpe of RL, equal weight and ALL_SPY: RL - EW is 0.5, -0.3, -0.5, 0.1 (median -0.1).
ORIGINS = [("2021-01-04", 1.5, 1.0, 0.7), ("2021-02-01", 0.2, 0.5, 0.1), ("2021-03-01", -0.4, 0.1, 0.0),
           ("2021-04-01", 0.9, 0.8, 1.2)]
WARNING = ("the greedy readout is not representative of the trained policy: its Sharpe 1.23 is at the 98th "
           "percentile of 64 sampled paths (5-95%: 0.12..0.50)")


@pytest.fixture(scope="module")
def report_path(tmp_path_factory) -> Path:
    """A report JSON + returns CSV with the layout reports.json_report.write_report produces."""
    folder = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(7)
    days = pd.bdate_range("2021-01-04", periods=300, name="Date")
    frame = pd.DataFrame({name: rng.normal(4e-4, 0.01, len(days)) for name in POLICIES}, index=days)
    frame["ALL_CASH"] = 0.0
    frame["EQ_BENCHMARK"] = rng.normal(3e-4, 0.009, len(days))
    regimes = np.array(["HOLD"] * len(days), dtype=object)
    regimes[0] = ""
    regimes[40], regimes[120], regimes[200] = "TILT_QQQ", "ALL_SPY", "TILT_QQQ"
    frame[REGIME_COLUMN] = regimes
    frame.to_csv(folder / "eval.returns.csv", float_format="%.17g")
    report = {
        "generated": "2024-01-01T00:00:00",
        "model": {"path": "/tmp/ck/model_final_test.pt", "parameters": 1234, "timesteps": 5678,
                  "training_config": {}, "training_data": {}},
        "data": {"source": "csv", "tickers": ["SPY", "QQQ"], "first_day": str(days[0].date()),
                 "last_day": str(days[-1].date()), "days": len(days), "fingerprint": "ab" * 32,
                 "days_filled": {"SPY": 0, "QQQ": 3}, "periods_per_year": 252},
        "costs": {"fees": 0.001, "slippage": 0.0, "execution": "next_open", "init_cash": 1_000_000.0},
        "readout": {"samples": 64, "policy_mode": "greedy", "origins": "monthly", "horizon_days": 63,
                    "initial": "cash", "null_draws": 200, "seed": 0, "risk_free": "0"},
        "rl_sampled": {"n": 64, "sharpe_median": 0.30652, "sharpe_p05": 0.12201, "sharpe_p95": 0.49827,
                       "total_return_median": 0.23894, "greedy_sharpe": RL_SHARPE,
                       "greedy_sharpe_percentile": 97.65625, "rl_path": "greedy"},
        "rolling_origins": {"n": len(ORIGINS), "horizon_days": 63, "mode": "greedy",
                            "median_sharpe_diff_vs_ew": -0.1, "share_beats_ew": 0.5, "share_beats_spy": 0.5,
                            "origins": [{"start": start, "days": 64, "rl_sharpe": rl, "ew_sharpe": ew,
                                         "spy_sharpe": spy} for start, rl, ew, spy in ORIGINS]},
        "random_null": {"n": 200, "rl_sharpe_percentile": 70.5, "sharpe_median": 0.94962, "sharpe_p95": 1.26264},
        "warnings": [WARNING],
        "overlap_with_training": False,
        "policies": [_metrics(name, rank, rng) for rank, name in enumerate(POLICIES, start=1)],
        "criteria": [{"name": "rl_sharpe_min", "value": RL_SHARPE, "threshold": 0.0, "passed": True},
                     {"name": "rl_rank_max", "value": 1.0, "threshold": 0.5, "passed": False},
                     {"name": "rl_greedy_representative", "value": 97.65625, "threshold": [5.0, 95.0],
                      "passed": False}],
        "passed": False,
        "parity_max_rel_diff": 2.1e-15,
        "returns_file": "eval.returns.csv",
    }
    path = folder / "eval.json"
    path.write_text(json.dumps(report, indent=2))
    return path


def _metrics_text(page: str) -> str:
    """The tables of the comparison page (charts carry no metrics and are left out)."""
    return "".join(re.findall(r"<table>.*?</table>", page, flags=re.DOTALL))


def _variant(report_path: Path, folder: Path, edit: Callable[[dict], None]) -> Path:
    """A copy of the fixture report (with its returns file) in `folder`, changed by `edit`."""
    report = json.loads(report_path.read_text())
    edit(report)
    shutil.copy(report_path.with_name(report["returns_file"]), folder / report["returns_file"])
    path = folder / "variant.json"
    path.write_text(json.dumps(report))
    return path


def _images(page: str) -> int:
    return page.count('src="data:image/png;base64,')


def test_comparison_page_is_self_contained_and_complete(report_path: Path, tmp_path: Path) -> None:
    out = write_comparison(report_path, tmp_path / "cmp.html")
    page = out.read_text()
    assert not re.search(r"""(src|href)=["']?https?:""", page)
    assert _images(page) == 4  # equity, drawdown, regimes, per-origin Sharpe difference
    for name in POLICIES:
        assert f"<td>{name}</td>" in page
    assert f"{RL_SHARPE:.3f}" in page
    assert "8.12%" in page and "-15.23%" in page  # fractions as percent
    assert "<th>turnover annual</th>" in page and "105.84%" in page
    assert "<th>in market</th><th>first trade</th>" in page
    assert "<td>87.65%</td><td>2021-03-02</td>" in page  # RL row
    assert "<td>0.00%</td><td>-</td></tr>" in page  # ALL_CASH: never in the market, no first trade
    assert "FAIL" in page and "model_final_test.pt" in page
    assert "starting portfolio cash; RL row: greedy path; 252 periods per year" in page
    assert "days filled QQQ 3" in page and "initial cash 1,000,000" in page
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


def test_comparison_shows_warnings_on_top_and_band_thresholds(report_path: Path, tmp_path: Path) -> None:
    page = write_comparison(report_path, tmp_path / "cmp.html").read_text()
    box = page.index(f"<div class='warning'>Warning: {WARNING}</div>")
    assert page.index("<h1>") < box < page.index("<img")  # under the verdict, above every chart and table
    assert "<td>rl_greedy_representative</td><td>97.6562</td><td>5..95</td><td class='fail'>FAIL</td>" in page


def test_comparison_readouts_are_formatted_and_explained(report_path: Path, tmp_path: Path) -> None:
    page = write_comparison(report_path, tmp_path / "cmp.html").read_text()
    readouts = page[page.index("<h2>Readouts</h2>"):]
    for label, value in [("greedy Sharpe", "1.235"), ("greedy Sharpe percentile among 64 sampled paths", "97.7"),
                         ("sampled median Sharpe", "0.307"), ("sampled Sharpe 5..95%", "0.122..0.498"),
                         ("sampled median total return", "23.89%"), ("origins", "4"), ("horizon (days)", "63"),
                         ("median Sharpe difference RL - equal weight", "-0.100"),
                         ("share of origins RL beats equal weight", "50.0%"),
                         ("share of origins RL beats ALL_SPY", "50.0%"), ("RL Sharpe percentile", "70.5"),
                         ("null median Sharpe", "0.950"), ("null 95th percentile Sharpe", "1.263"),
                         ("mean entropy / max", "1.898 / 2.773"), ("mean top probability", "0.410"),
                         ("days holding ALL_CASH", "13.3%"), ("days holding TILT_QQQ", "60.0%")]:
        assert f"<tr><td>{label}</td><td>{value}</td></tr>" in readouts, label
    explanations = re.findall(r"<h3>.*?</h3>\n<p class='explain'>(.*?)</p>", readouts)
    assert len(explanations) == 4  # sampled paths, rolling origins, random null, behaviour
    for text in explanations:
        assert len(re.findall(r"\.(?:\s|$)", text)) == 2, text  # exactly two sentences
    assert "artefact of argmax" in explanations[0] and "up to 63 trading days" in explanations[1]
    assert "exactly the days RL switched" in explanations[2]


def test_comparison_without_origins_has_no_origin_chart(report_path: Path, tmp_path: Path) -> None:
    def no_origins(report: dict) -> None:
        report["readout"]["origins"] = "none"
        report["rolling_origins"] = {"n": 0, "horizon_days": 63, "origins": []}

    page = write_comparison(_variant(report_path, tmp_path, no_origins), tmp_path / "cmp.html").read_text()
    assert _images(page) == 3
    assert "<tr><td>origins</td><td>0</td></tr>" in page
    assert "<tr><td>median Sharpe difference RL - equal weight</td><td>-</td></tr>" in page


def test_comparison_renders_a_report_saved_before_the_readouts(report_path: Path, tmp_path: Path) -> None:
    def old_style(report: dict) -> None:
        for key in ("readout", "rl_sampled", "rolling_origins", "random_null", "warnings"):
            del report[key]
        del report["data"]["periods_per_year"], report["data"]["days_filled"], report["costs"]["init_cash"]
        for row in report["policies"]:
            for key in ("turnover_annual", "time_in_market", "first_trade", "mean_entropy", "mean_max_prob",
                        "max_entropy", "regime_share"):
                row.pop(key, None)
            if row["name"] == "ALL_CASH":
                row["sharpe"] = row["sortino"] = None
        report["criteria"] = [c for c in report["criteria"] if not isinstance(c["threshold"], list)]

    page = write_comparison(_variant(report_path, tmp_path, old_style), tmp_path / "cmp.html").read_text()
    assert _images(page) == 3
    assert f"{RL_SHARPE:.3f}" in page and "8.12%" in page
    assert "<td>-</td><td>-</td></tr>" in page  # no in-market share, no first trade
    assert "class='warning'" not in page and "Readouts" not in page and "5..95" not in page
    assert "starting portfolio -; RL row: - path; - periods per year" in page


def test_comparison_is_reproducible(report_path: Path, tmp_path: Path) -> None:
    first = write_comparison(report_path, tmp_path / "a.html").read_text()
    second = write_comparison(report_path, tmp_path / "b.html").read_text()
    assert _metrics_text(first) == _metrics_text(second) != ""


def test_held_regimes_carry_the_last_order_forward() -> None:
    raw = pd.Series(["", "HOLD", "TILT_QQQ", "HOLD", "", "ALL_SPY", "HOLD"])
    assert list(held_regimes(raw)) == ["ALL_CASH", "ALL_CASH", "TILT_QQQ", "TILT_QQQ", "TILT_QQQ",
                                       "ALL_SPY", "ALL_SPY"]


@pytest.mark.parametrize("bench", ["SPY", "EQ_WEIGHT"])
def test_tearsheet_is_offline_and_inline(report_path: Path, tmp_path: Path, bench: str,
                                         capsys: pytest.CaptureFixture) -> None:
    out = write_tearsheet(report_path, tmp_path / "tear.html", benchmark=bench)
    page = out.read_text()
    assert "<svg" in page or "data:image" in page
    assert not re.search(r"""<(img|script)[^>]*src=["']?https?:""", page)
    assert f"RL model_final_test.pt vs {bench}, 2021-01-04..2022-02-25" in page
    assert not list(tmp_path.glob(".*tmp"))
    captured = capsys.readouterr()
    assert "findfont" not in captured.out + captured.err


def test_unknown_benchmark_is_refused(report_path: Path, tmp_path: Path) -> None:
    with pytest.raises(RLTraderError, match=r"unknown benchmark 'IWM'.*SPY, QQQ or EQ_WEIGHT") as info:
        write_tearsheet(report_path, tmp_path / "tear.html", benchmark="IWM")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "tear.html").exists()
