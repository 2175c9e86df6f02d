"""The walk-forward's comparison page: the stitched out-of-sample curves, the folds and the tests.

Rebuilt from `walkforward.json` and the stitched daily returns saved beside it, like the backtest's
comparison page (reports/comparison.py, whose chart and cell helpers it uses): the equity of the
ensemble (with the 5-95% band of its stitched sampled paths), each seed and every baseline, their
drawdowns, a bar chart of each fold's Sharpe ratios, the per-fold table, the stitched metrics and
the significance figures. One self-contained HTML file.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from backtests.metrics import METRICS
from backtests.walkforward import MAIN_SERIES, RETURNS_FILE, STITCH_METRICS
from reports.comparison import PAGE_CSS, _cell, _fmt, _png, _text, drawdown_chart
from rl_strategy.atomic import atomic_write_text
from rl_strategy.errors import RLTraderError

SIGNIFICANCE_ROWS = (("psr_vs_zero", "PSR vs a Sharpe of 0"), ("psr_vs_benchmark", "PSR vs the benchmark's Sharpe"),
                     ("dsr", "deflated Sharpe ratio"), ("n_trials", "trials"),
                     ("expected_max_sharpe", "expected best trial Sharpe by luck (per period)"),
                     ("sharpe_per_period", "RL Sharpe per period"), ("skew", "skew"), ("kurtosis", "kurtosis"),
                     ("n_obs", "days"), ("spa_pvalue", "SPA p-value: some baseline beats RL"),
                     ("spa_pvalue_rl_outperforms", "SPA p-value: RL beats every baseline"))
STITCH_TEXT = ("Each fold's policy decides only on its own test window; the windows are read as one account. "
               "{carry} The ensemble's greedy path is the main RL series; the band is the 5-95% range of its stitched "
               "sampled paths.")


def read_walkforward(path: str | Path) -> tuple[dict, pd.DataFrame]:
    """A saved walk-forward and its stitched returns; a one-line error when there is nothing to show."""
    path = Path(path)
    if not path.is_file():
        raise RLTraderError(f"no walk-forward report at {path}")
    report = json.loads(path.read_text())
    if report["stitched"] is None:
        raise RLTraderError(f"{path}: no fold finished, nothing to compare (see its failed list)")
    returns = path.with_name(RETURNS_FILE)
    if not returns.is_file():
        raise RLTraderError(f"{path}: its stitched returns {RETURNS_FILE} are missing beside it")
    return report, pd.read_csv(returns, index_col=0, parse_dates=True)


def _charts(report: dict, returns: pd.DataFrame) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    greedy = [c for c in returns.columns if ":" not in c]
    equity = (1.0 + returns).cumprod()
    sampled = equity[[c for c in returns.columns if c.startswith(f"{MAIN_SERIES}:")]]
    starts = pd.to_datetime([f["test_start"] for f in report["folds"]])
    charts = {}
    fig, ax = plt.subplots(figsize=(11, 4.2))
    if sampled.shape[1]:
        ax.fill_between(equity.index, sampled.quantile(0.05, axis=1), sampled.quantile(0.95, axis=1), color="0.8",
                        label=f"{MAIN_SERIES} sampled 5-95%")
    for name in greedy:
        main, seed = name == MAIN_SERIES, name.startswith(f"{MAIN_SERIES}_SEED_")
        ax.plot(equity.index, equity[name], lw=2.2 if main else 1.0, ls="--" if seed else "-", label=name,
                color="black" if main else None)
    for day in starts[1:]:
        ax.axvline(day, color="0.5", lw=0.6, ls=":")
    ax.set_title("Stitched out-of-sample equity (start = 1; dotted lines: fold starts)")
    ax.grid(alpha=0.3)
    ax.legend(ncol=4, fontsize=8)
    charts["equity"] = _png(fig)
    plt.close(fig)

    charts["drawdown"] = drawdown_chart(equity, list(greedy), MAIN_SERIES)

    bars = _fold_sharpes(report)
    fig, ax = plt.subplots(figsize=(11, 3.4))
    width = 0.8 / max(bars.shape[1], 1)
    for i, name in enumerate(bars.columns):
        ax.bar(np.arange(len(bars)) + i * width, bars[name].astype(float), width, label=name,
               color="black" if name == MAIN_SERIES else None)
    ax.set_xticks(np.arange(len(bars)) + 0.4 - width / 2, bars.index)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_ylabel("Sharpe")
    ax.set_title("Sharpe per fold's test window (each fold's own backtest, from cash)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(ncol=4, fontsize=8)
    charts["folds"] = _png(fig)
    plt.close(fig)
    return charts


def _fold_sharpes(report: dict) -> pd.DataFrame:
    """Per fold: the ensemble's, each seed's and the best baseline's Sharpe (None where missing)."""
    seeds = sorted({s for f in report["folds"] for s in f["seeds"]}, key=int)
    rows = {}
    for f in report["folds"]:
        ens, best = f["ensemble"], f["best_baseline"]
        rows[f"{f['test_start'][:7]}"] = {MAIN_SERIES: ens["rl"]["sharpe"] if ens else None} | {
            f"{MAIN_SERIES}_SEED_{s}": f["seeds"][s]["rl"]["sharpe"] if s in f["seeds"] else None for s in seeds} | {
            "best baseline": best["sharpe"] if best else None}
    return pd.DataFrame.from_dict(rows, orient="index")


def _fold_table(report: dict) -> str:
    seeds = sorted({s for f in report["folds"] for s in f["seeds"]}, key=int)
    head = ("<tr><th>fold</th><th>train</th><th>validation</th><th>test</th>"
            + "".join(f"<th>seed {s}</th>" for s in seeds)
            + "<th>ensemble</th><th>best baseline</th><th>null pct</th><th>criteria</th><th>failed seeds</th></tr>")
    rows = []
    for f in report["folds"]:
        ens, best = f["ensemble"], f["best_baseline"]
        passed = f["passed"]
        verdict = "-" if passed is None else f"<span class='{'pass' if passed else 'fail'}'>{'pass' if passed else 'FAIL'}</span>"
        cells = [str(f["fold"]), f"{f['train_start']}..{f['train_decisions_end']}",
                 f"{f['val_start']}..{f['val_end']}" if f["val_start"] else "-", f"{f['test_start']}..{f['test_end']}",
                 *[_fmt(f["seeds"][s]["rl"]["sharpe"]) if s in f["seeds"] else "-" for s in seeds],
                 _fmt(ens["rl"]["sharpe"]) if ens else "-",
                 f"{html.escape(best['name'])} {_fmt(best['sharpe'])}" if best else "-",
                 _fmt(f["null_percentile"], ".0f"), verdict, ", ".join(map(str, f["failed_seeds"])) or "-"]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _stitched_tables(stitched: dict) -> str:
    cols = ("rank", *METRICS)
    head = "<tr><th>policy</th>" + "".join(f"<th>{k.replace('_', ' ')}</th>" for k in cols) + "</tr>"
    rows = "".join(f"<tr class='{'rl' if name == MAIN_SERIES else ''}'><td>{html.escape(name)}</td>"
                   + "".join(f"<td>{_cell(k, p.get(k))}</td>" for k in cols) + "</tr>"
                   for name, p in stitched["policies"].items())
    band = lambda d, spec: f"{_fmt(d['median'], spec)} ({_fmt(d['p05'], spec)}..{_fmt(d['p95'], spec)})"  # noqa: E731
    spec = {"sharpe": ".3f", "total_return": ".1%", "max_drawdown": ".1%", "turnover": ".1%"}
    shead = ("<tr><th>track</th><th>paths</th><th>greedy Sharpe pct</th>"
             + "".join(f"<th>{k.replace('_', ' ')} median (5..95%)</th>" for k in STITCH_METRICS) + "</tr>")
    srows = "".join(f"<tr><td>{html.escape(t)}</td><td>{s['n']}</td><td>{_fmt(s['greedy_sharpe_percentile'], '.0f')}</td>"
                    + "".join(f"<td>{band(s[k], spec[k])}</td>" for k in STITCH_METRICS) + "</tr>"
                    for t, s in stitched["sampled"].items())
    return (f"<h2>Stitched metrics (greedy paths and baselines)</h2>\n<table>{head}{rows}</table>\n"
            f"<h2>Stitched sampled paths</h2>\n<table>{shead}{srows}</table>")


def _significance(sig: dict | None) -> str:
    if sig is None:
        return ""
    rows = [(label, _fmt(sig.get(key), "d" if isinstance(sig.get(key), int) else ".4f"))
            for key, label in SIGNIFICANCE_ROWS]
    ci = sig.get("bootstrap_ci_sharpe_diff") or [None, None]
    rows.insert(4, ("95% bootstrap interval of the annualised Sharpe difference vs the benchmark",
                    f"{_fmt(ci[0])}..{_fmt(ci[1])}"))
    cells = "".join(f"<tr><td>{_text(label)}</td><td>{value}</td></tr>" for label, value in rows)
    return (f"<h2>Significance (reported, never used for a choice)</h2>\n<p class='explain'>{_text(sig['readout'])}; "
            f"benchmark {_text(sig['benchmark'])}; trials: {_text(sig['trials'])}.</p>\n<table>{cells}</table>")


def render(report: dict, returns: pd.DataFrame) -> str:
    charts = _charts(report, returns)
    st, esc = report["stitched"], html.escape
    plan = report["settings"]["walkforward"]
    failed = "".join(f"<div class='warning'>fold {f['fold']} seed {f['seed']} failed: {esc(f['error'])}</div>"
                     for f in report["failed"])
    held = "".join(f"<div class='warning'>{esc(t)} held its positions without a policy in folds "
                   f"{', '.join(map(str, folds))}</div>" for t, folds in st["held_folds"].items())
    title = f"Walk-forward {esc(st['first_day'])} .. {esc(st['last_day'])}"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>rl-trader: {title}</title>
<style>
{PAGE_CSS}
.warning {{ border: 2px solid #b3261e; background: #fce8e6; color: #b3261e; font-weight: bold; padding: 8px 12px;
  margin: 8px 0; }}
.explain {{ max-width: 60em; }} img {{ max-width: 100%; }} .meta {{ color: #555; font-size: 13px; }}
</style></head><body>
<h1>{title}: {len(report['folds'])} folds x {plan['seeds']} seeds, stitched out of sample</h1>
{failed}{held}
<p class="meta">train {plan['train_years']} years (validation: the last {plan['val_years']}), test {plan['test_years']},
step {plan['step_years'] or plan['test_years']}; {st['days']} days, {st['periods_per_year']} per year;
holdings: {_text(st['carry'])}; environment vs vectorbt equity parity {st['parity_max_rel_diff']:.1e};
wall time {report['wall_seconds']:.0f} s</p>
<p class="explain">{_text(STITCH_TEXT.format(carry=st['carry'].capitalize() + '.'))}</p>
<img alt="stitched equity" src="{charts['equity']}">
<img alt="drawdowns" src="{charts['drawdown']}">
<h2>Folds</h2>
{_fold_table(report)}
<img alt="Sharpe per fold" src="{charts['folds']}">
{_stitched_tables(st)}
{_significance(report['significance'])}
</body></html>
"""


def write_walkforward_html(json_path: str | Path, html_path: str | Path) -> Path:
    return atomic_write_text(html_path, render(*read_walkforward(json_path)))
