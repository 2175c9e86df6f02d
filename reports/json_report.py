"""The JSON evaluation report and the returns file saved beside it.

Fractions, not percent. The returns (every policy, the equal-weight benchmark and the RL
policy's regime per day) go to `<report>.returns.csv`, so tearsheets and the comparison page
can be rebuilt from a saved report without re-running the policy.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import pandas as pd

from backtests.metrics import COUNT_METRICS, METRICS
from rl_strategy.atomic import atomic_write_text
from rl_strategy.checkpoint import package_versions
from rl_strategy.errors import RLTraderError
from rl_strategy.regimes import build_regime_table
from rl_strategy.risk import action_mask

REGIME_COLUMN = "RL_REGIME"


def _num(x) -> float | int | None:
    """JSON has no NaN: undefined metrics (e.g. the Sharpe of all-cash) become null."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def _clean(obj):
    """Nested readouts with NaN/inf as null (JSON has neither)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    if isinstance(obj, float):
        return _num(obj)
    return obj


def returns_path(report_path: Path) -> Path:
    return report_path.with_name(report_path.stem + ".returns.csv")


def masked_regimes(ckpt) -> list[str]:
    """The regimes the checkpoint's risk limits take out of its action set."""
    names = ckpt.spec.regime_names
    table = build_regime_table(ckpt.assets, ckpt.settings.regimes.families)
    return [str(n) for n, ok in zip(names, action_mask(table, ckpt.settings.risk), strict=True) if not ok]


def build_report(result, returns_file: str) -> dict:
    """`result` is a backtests.evaluate.BacktestResult."""
    ckpt, data = result.checkpoint, result.data
    policies = []
    for name, row in result.table.iterrows():
        entry = {"name": name}
        for key in ("rank", *METRICS):  # a comparison-only row has no rank (null)
            entry[key] = int(row[key]) if key in COUNT_METRICS and row[key] == row[key] else _num(row[key])
        if name in result.comparison_only:
            entry["comparison_only"] = True
        entry["time_in_market"] = _num(row["time_in_market"])
        entry["first_trade"] = row["first_trade"] if isinstance(row["first_trade"], str) else None
        if name == "RL":
            entry.update({k: _clean(v) for k, v in result.rl_behaviour.items()})
        policies.append(entry)
    idx = result.returns.index
    return {
        "generated": datetime.now().isoformat(timespec="seconds"),
        "model": {"path": str(ckpt.path), "parameters": ckpt.spec.parameters,
                  "timesteps": ckpt.progress.timesteps,
                  "training_config": ckpt.settings.to_dict(), "training_data": asdict(ckpt.training_data),
                  "observation_layout": list(ckpt.spec.layout),
                  "risk": asdict(ckpt.settings.risk) | {"masked_regimes": masked_regimes(ckpt)}},
        "data": {"source": data.source, "tickers": list(data.tickers), "signals": list(data.signals),
                 "first_day": str(idx[0].date()),
                 "last_day": str(idx[-1].date()), "days": len(idx), "fingerprint": data.fingerprint,
                 "days_filled": dict(data.filled), "periods_per_year": result.periods_per_year},
        "costs": dict(result.costs),
        "readout": asdict(result.options) | {"risk_free": result.risk_free},
        "rl_sampled": _clean(result.rl_sampled),
        "rolling_origins": _clean(result.rolling_origins),
        "random_null": _clean(result.random_null),
        "warnings": list(result.warnings),
        "overlap_with_training": result.overlap_with_training,
        "policies": policies,
        "criteria": [c.to_dict() for c in result.criteria],
        "passed": result.passed,
        "parity_max_rel_diff": result.parity_max_rel_diff,
        "returns_file": returns_file,
        "versions": package_versions(),
    }


def write_report(result, path: str | Path) -> Path:
    """Write the returns CSV, then the JSON (both atomically)."""
    path = Path(path)
    rpath = returns_path(path)
    frame = result.returns.copy()
    frame[result.benchmark.name] = result.benchmark
    frame[REGIME_COLUMN] = result.rl_regimes
    atomic_write_text(rpath, frame.to_csv(float_format="%.17g"))
    report = build_report(result, rpath.name)
    atomic_write_text(path, json.dumps(report, indent=2, allow_nan=False))
    return path


def read_report(path: str | Path) -> tuple[dict, pd.DataFrame]:
    """A saved report and its returns frame (policies, benchmark, RL regime column)."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RLTraderError(f"cannot read report {path}: {exc}") from None
    rpath = path.with_name(report.get("returns_file", returns_path(path).name))
    if not rpath.is_file():
        raise RLTraderError(f"the returns file {rpath} of report {path.name} is missing")
    frame = pd.read_csv(rpath, index_col=0, parse_dates=True, keep_default_na=False,
                        dtype={REGIME_COLUMN: str})
    return report, frame
