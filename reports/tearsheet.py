"""quantstats HTML tearsheet of the RL policy, rebuilt from a saved report (offline).

The benchmark is handed to quantstats as a returns series from the report (given a ticker
string, quantstats would download it): `SPY` means the ALL_SPY baseline (buy and hold with the
same costs), or REF_SPY, the comparison-only criteria reference, when SPY is outside the universe;
`EQ_WEIGHT` the equal-weight daily-rebalanced benchmark of the reward.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pandas as pd

from backtests.criteria import REF_PREFIX
from reports.json_report import read_report
from rl_strategy.atomic import atomic_write_text
from rl_strategy.errors import RLTraderError


def benchmark_returns(report: dict, frame: pd.DataFrame, benchmark: str) -> pd.Series:
    """The benchmark as a returns series from the report, so quantstats never downloads one."""
    tickers = report["data"]["tickers"]
    if benchmark == "EQ_WEIGHT":
        return frame["EQ_BENCHMARK"].rename("EQ_WEIGHT")
    if benchmark in tickers and f"ALL_{benchmark}" in frame.columns:
        return frame[f"ALL_{benchmark}"].rename(benchmark)
    if f"{REF_PREFIX}{benchmark}" in frame.columns:  # the criteria reference, a ticker outside the universe
        return frame[f"{REF_PREFIX}{benchmark}"].rename(benchmark)
    refs = [c.removeprefix(REF_PREFIX) for c in frame.columns if c.startswith(REF_PREFIX)]
    raise RLTraderError(f"unknown benchmark {benchmark!r}: use one of {', '.join([*tickers, *refs])} or EQ_WEIGHT")


def title_of(report: dict, benchmark: str) -> str:
    """Model, benchmark, period and costs: a tearsheet must say what it was computed under."""
    c, d = report["costs"], report["data"]
    return (f"RL {Path(report['model']['path']).name} vs {benchmark}, {d['first_day']}..{d['last_day']}, "
            f"fees {100 * c['fees']:g}%, slippage {100 * c['slippage']:g}%, {c['execution']}")


def write_tearsheet(report_path: str | Path, html_path: str | Path, benchmark: str = "SPY") -> Path:
    """Render the RL policy's quantstats tearsheet from a saved report, offline and quietly."""
    import matplotlib

    matplotlib.use("Agg")
    report, frame = read_report(report_path)
    bench = benchmark_returns(report, frame, benchmark)
    returns = frame["RL"].rename("RL")
    import quantstats as qs

    html_path = Path(html_path)
    tmp = html_path.with_name(f".{html_path.name}.tmp")
    font_logger = logging.getLogger("matplotlib.font_manager")
    level = font_logger.level
    font_logger.setLevel(logging.ERROR)  # "findfont: Font family ... not found" for every chart
    try:
        with warnings.catch_warnings():
            # quantstats and seaborn trip pandas/matplotlib deprecations (and a ticklabel
            # UserWarning) on every chart; the warnings are attributed to their modules
            for category in (FutureWarning, DeprecationWarning, PendingDeprecationWarning, UserWarning,
                             RuntimeWarning):
                warnings.filterwarnings("ignore", category=category, module=r"(quantstats|seaborn)(\.|$)")
            qs.reports.html(returns, benchmark=bench, output=str(tmp), title=title_of(report, benchmark),
                            periods_per_year=report["data"].get("periods_per_year", 252),
                            download_filename=html_path.name,
                            match_dates=False)  # keep the report's whole period, cash days included
        text = tmp.read_text(encoding="utf-8")
    finally:
        font_logger.setLevel(level)
        tmp.unlink(missing_ok=True)
    return atomic_write_text(html_path, text)
