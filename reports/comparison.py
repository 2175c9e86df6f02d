"""One self-contained HTML page comparing the RL policy with every baseline.

Equity curves, drawdowns, the ranked metrics table, the criteria and the regime the RL policy
held each day, rebuilt from a saved report. Charts are PNGs embedded as base64: the page needs
no network and no other file.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd

from backtests.metrics import COUNT_METRICS, METRICS, PERCENT_METRICS
from reports.json_report import REGIME_COLUMN, read_report
from rl_strategy.atomic import atomic_write_text

COLUMNS = ("rank", *METRICS)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def held_regimes(regimes: pd.Series) -> pd.Series:
    """The regime held each day: the last order's regime carried through HOLD days."""
    held = regimes.replace({"": np.nan, "HOLD": np.nan}).ffill()
    return held.fillna("ALL_CASH")


def _charts(frame: pd.DataFrame, policies: list[str]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    equity = (1.0 + frame[policies]).cumprod()
    charts = {}
    fig, ax = plt.subplots(figsize=(11, 4.2))
    for name in policies:
        ax.plot(equity.index, equity[name], lw=2.2 if name == "RL" else 1.0, label=name,
                color="black" if name == "RL" else None)
    ax.set_title("Equity (start = 1)")
    ax.grid(alpha=0.3)
    ax.legend(ncol=4, fontsize=8)
    charts["equity"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(11, 3.2))
    for name in policies:
        dd = equity[name] / equity[name].cummax() - 1.0
        ax.plot(dd.index, dd, lw=2.0 if name == "RL" else 0.8, label=name, color="black" if name == "RL" else None)
    ax.set_title("Drawdown")
    ax.grid(alpha=0.3)
    charts["drawdown"] = _png(fig)
    plt.close(fig)

    held = held_regimes(frame[REGIME_COLUMN])
    names = list(dict.fromkeys(held))
    codes = held.map({n: i for i, n in enumerate(names)}).to_numpy()
    cmap = plt.get_cmap("tab20", max(len(names), 1))
    fig, ax = plt.subplots(figsize=(11, 1.8))
    ax.imshow(codes[None, :], aspect="auto", cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5, interpolation="nearest",
              extent=(0, len(codes), 0, 1))
    ticks = np.linspace(0, len(codes) - 1, 6).astype(int)
    ax.set_xticks(ticks, [str(frame.index[i].date()) for i in ticks])
    ax.set_yticks([])
    ax.set_title("Regime held by the RL policy")
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(len(names))]
    ax.legend(handles, names, ncol=min(len(names), 6), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    charts["regimes"] = _png(fig)
    plt.close(fig)
    return charts


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key in COUNT_METRICS:
        return str(int(value))
    return f"{100 * value:.2f}%" if key in PERCENT_METRICS else f"{value:.3f}"


def _num(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def render(report: dict, frame: pd.DataFrame) -> str:
    policies = [p["name"] for p in report["policies"]]
    charts = _charts(frame, policies)
    esc = html.escape
    rows = "".join(
        f"<tr class='{'rl' if p['name'] == 'RL' else ''}'><td>{esc(p['name'])}</td>"
        + "".join(f"<td>{_cell(k, p[k])}</td>" for k in COLUMNS) + "</tr>" for p in report["policies"])
    crit = "".join(
        f"<tr><td>{esc(c['name'])}</td><td>{_num(c['value'])}</td><td>{_num(c['threshold'])}</td>"
        f"<td class='{'pass' if c['passed'] else 'fail'}'>{'pass' if c['passed'] else 'FAIL'}</td></tr>"
        for c in report["criteria"])
    d, c, m = report["data"], report["costs"], report["model"]
    verdict = "<span class='pass'>PASS</span>" if report["passed"] else "<span class='fail'>FAIL</span>"
    overlap = "<p class='fail'>The test period overlaps the training period.</p>" if report.get("overlap_with_training") else ""
    head = "".join(f"<th>{k.replace('_', ' ')}</th>" for k in COLUMNS)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>rl-trader: RL vs baselines {esc(d['first_day'])}..{esc(d['last_day'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin: 12px 0; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
tr.rl {{ font-weight: bold; background: #eef6ff; }}
.pass {{ color: #137333; font-weight: bold; }} .fail {{ color: #b3261e; font-weight: bold; }}
img {{ max-width: 100%; }} .meta {{ color: #555; font-size: 13px; }}
</style></head><body>
<h1>RL policy vs baselines, out of sample {esc(d['first_day'])} .. {esc(d['last_day'])}: {verdict}</h1>
<p class="meta">model {esc(Path(m['path']).name)} ({m['parameters']:,} parameters, {m['timesteps']:,} timesteps);
data {esc(d['source'])} {esc(','.join(d['tickers']))}, {d['days']} days, fingerprint {esc(d['fingerprint'][:16])};
fees {c['fees']:g}, slippage {c['slippage']:g}, execution {esc(c['execution'])};
environment vs vectorbt equity parity {report['parity_max_rel_diff']:.1e}</p>{overlap}
<img alt="equity curves" src="{charts['equity']}">
<img alt="drawdowns" src="{charts['drawdown']}">
<h2>Ranked by Sharpe</h2>
<table><tr><th>policy</th>{head}</tr>{rows}</table>
<h2>v2 criteria</h2>
<table><tr><th>criterion</th><th>value</th><th>threshold</th><th>result</th></tr>{crit}</table>
<img alt="regimes held" src="{charts['regimes']}">
</body></html>
"""


def write_comparison(report_path: str | Path, html_path: str | Path) -> Path:
    report, frame = read_report(report_path)
    return atomic_write_text(html_path, render(report, frame))
