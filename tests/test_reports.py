"""The tearsheet and comparison pages, rebuilt from a small fake saved report (no checkpoint)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reports.comparison import held_regimes, write_comparison
from reports.json_report import REGIME_COLUMN
from reports.tearsheet import write_tearsheet
from rl_strategy.errors import RLTraderError

POLICIES = ["RL", "ALL_CASH", "ALL_SPY", "ALL_QQQ", "EQ_BUY_HOLD", "RANDOM"]
RL_SHARPE = 1.2345678


def _metrics(name: str, rank: int, rng: np.random.Generator) -> dict:
    """One policy row as build_report writes it (ALL_CASH has undefined ratios: null)."""
    cash = name == "ALL_CASH"
    return {
        "name": name, "rank": rank,
        "sharpe": None if cash else (RL_SHARPE if name == "RL" else float(rng.normal())),
        "sortino": None if cash else float(rng.normal()),
        "cagr": 0.0 if cash else 0.0812, "total_return": 0.0 if cash else 0.1034,
        "volatility": 0.0 if cash else 0.2011, "max_drawdown": 0.0 if cash else -0.1523,
        "calmar": None if cash else 0.53, "turnover": 0.0 if cash else 0.0042,
        "rebalances": 0 if cash else 7, "alpha": 0.0 if cash else 0.011, "information_ratio": 0.02,
    }


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
                 "last_day": str(days[-1].date()), "days": len(days), "fingerprint": "ab" * 32},
        "costs": {"fees": 0.001, "slippage": 0.0, "execution": "next_open"},
        "overlap_with_training": False,
        "policies": [_metrics(name, rank, rng) for rank, name in enumerate(POLICIES, start=1)],
        "criteria": [{"name": "rl_sharpe_min", "value": RL_SHARPE, "threshold": 0.0, "passed": True},
                     {"name": "rl_rank_max", "value": 1.0, "threshold": 0.5, "passed": False}],
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


def test_comparison_page_is_self_contained_and_complete(report_path: Path, tmp_path: Path) -> None:
    out = write_comparison(report_path, tmp_path / "cmp.html")
    page = out.read_text()
    assert not re.search(r"""(src|href)=["']?https?:""", page)
    assert page.count('src="data:image/png;base64,') == 3
    for name in POLICIES:
        assert f"<td>{name}</td>" in page
    assert f"{RL_SHARPE:.3f}" in page
    assert "8.12%" in page and "-15.23%" in page  # fractions as percent
    assert "FAIL" in page and "model_final_test.pt" in page
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


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
