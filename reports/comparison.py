"""One self-contained HTML page comparing the RL policy with every baseline.

Equity curves, drawdowns, the ranked metrics table, the criteria, the regime the RL policy
held each day and the readouts that say how far the table's RL row can be trusted (sampled
paths, rolling origins, random null, the policy's confidence), rebuilt from a saved report.
Charts are PNGs embedded as base64: the page needs no network and no other file. Keys a report
saved before a readout existed are shown as "-" or, for a whole readout, left out.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd

from backtests.metrics import COUNT_METRICS, METRICS, PERCENT_METRICS, held_regimes
from reports.json_report import REGIME_COLUMN, read_report
from rl_strategy.atomic import atomic_write_text

COLUMNS = ("rank", *METRICS, "time_in_market", "first_trade")
HEADERS = {"time_in_market": "in market", "first_trade": "first trade"}
PERCENT_COLUMNS = PERCENT_METRICS | {"time_in_market"}

#: Two sentences under each readout heading, for a reader who has not seen the readout before.
SAMPLED_TEXT = ("The greedy row follows the policy's most likely action every day; the sampled paths draw actions "
                "from the policy's probabilities, as it was trained. A greedy Sharpe outside the sampled band means "
                "the table shows an artefact of argmax, not the trained policy.")
ORIGINS_TEXT = ("Each origin restarts the policy on the first trading day of a month with fresh memory and the chosen "
                "starting portfolio, runs it for up to {horizon} trading days and compares it with equal weight bought "
                "the same day. The spread of RL minus equal weight across origins shows how much the full-period "
                "result owes to its start date.")
NULL_TEXT = ("The null draws random policies that switch regime on exactly the days RL switched, so they share its "
             "number and timing of switches and differ only in the regimes they pick. RL's percentile among their "
             "Sharpe ratios says whether its choice of regimes beats chance given its timing.")
BEHAVIOUR_TEXT = ("Entropy and top probability are averaged over the greedy path's days, and an entropy near its "
                  "maximum (every action equally likely) means each argmax decision rests on small probability "
                  "differences. The regime shares are the fraction of days the table's RL path held each regime, "
                  "HOLD days counted as the regime last ordered.")


#: The style both HTML pages share (tables, the RL row, pass/fail marks).
PAGE_CSS = """body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 12px 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
tr.rl { font-weight: bold; background: #eef6ff; }
.pass { color: #137333; font-weight: bold; } .fail { color: #b3261e; font-weight: bold; }"""


def drawdown_chart(equity: pd.DataFrame, names: list[str], main: str) -> str:
    """Drawdown from the running peak of each equity curve, `main` drawn in bold black; a PNG data URI."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 3.2))
    for name in names:
        dd = equity[name] / equity[name].cummax() - 1.0
        ax.plot(dd.index, dd, lw=2.0 if name == main else 0.8, label=name, color="black" if name == main else None)
    ax.set_title("Drawdown")
    ax.grid(alpha=0.3)
    chart = _png(fig)
    plt.close(fig)
    return chart


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _charts(frame: pd.DataFrame, policies: list[str], origins: list[dict]) -> dict[str, str]:
    """Equity, drawdown and regime charts, plus the per-origin Sharpe difference when origins were run."""
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

    charts["drawdown"] = drawdown_chart(equity, policies, "RL")

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

    if origins:
        starts = pd.to_datetime([o["start"] for o in origins])
        # null (an undefined Sharpe) becomes NaN: no bar rather than a fake zero
        diff = np.array([o["rl_sharpe"] for o in origins], dtype=float) - np.array(
            [o["ew_sharpe"] for o in origins], dtype=float)
        fig, ax = plt.subplots(figsize=(11, 3.2))
        ax.bar(starts, diff, width=20, color=np.where(diff >= 0, "#137333", "#b3261e"))
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_ylabel("Sharpe difference")
        ax.set_title("Sharpe of RL minus equal weight, per rolling origin (bar at the origin's start)")
        ax.grid(alpha=0.3, axis="y")
        charts["origins"] = _png(fig)
        plt.close(fig)
    return charts


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return html.escape(value)
    if key in COUNT_METRICS:
        return str(int(value))
    return f"{100 * value:.2f}%" if key in PERCENT_COLUMNS else f"{value:.3f}"


def _num(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _threshold(value) -> str:
    """A [low, high] band (the greedy Sharpe's percentile) reads low..high."""
    return "..".join(f"{v:g}" for v in value) if isinstance(value, list) else _num(value)


def _fmt(value, spec: str = ".3f") -> str:
    """A readout figure; "-" where the report lacks it or it was undefined (null)."""
    return "-" if value is None else format(value, spec)


def _text(value: str) -> str:
    """Escaped for a text node; apostrophes stay readable in the page source."""
    return html.escape(value, quote=False)


def _readout(title: str, text: str, rows: list[tuple[str, str]], chart: str = "") -> str:
    cells = "".join(f"<tr><td>{_text(label)}</td><td>{value}</td></tr>" for label, value in rows)
    return f"<h3>{_text(title)}</h3>\n<p class='explain'>{_text(text)}</p>\n<table>{cells}</table>\n{chart}"


def _readouts(report: dict, charts: dict[str, str]) -> str:
    """The readouts section; a readout the report predates is left out."""
    parts = []
    if (s := report.get("rl_sampled")) is not None:
        parts.append(_readout("Greedy row vs sampled paths", SAMPLED_TEXT, [
            ("greedy Sharpe", _fmt(s.get("greedy_sharpe"))),
            (f"greedy Sharpe percentile among {s.get('n', '-')} sampled paths",
             _fmt(s.get("greedy_sharpe_percentile"), ".1f")),
            ("sampled median Sharpe", _fmt(s.get("sharpe_median"))),
            ("sampled Sharpe 5..95%", f"{_fmt(s.get('sharpe_p05'))}..{_fmt(s.get('sharpe_p95'))}"),
            ("sampled median total return", _fmt(s.get("total_return_median"), ".2%")),
            ("path in the table's RL row", html.escape(str(s.get("rl_path", "-"))))]))
    if (o := report.get("rolling_origins")) is not None:
        chart = f'<img alt="Sharpe difference per origin" src="{charts["origins"]}">' if "origins" in charts else ""
        parts.append(_readout("Rolling origins", ORIGINS_TEXT.format(horizon=o.get("horizon_days", "-")), [
            ("origins", str(o.get("n", 0))),
            ("horizon (days)", _fmt(o.get("horizon_days"), "d")),
            ("policy mode", html.escape(str(o.get("mode", "-")))),
            ("median Sharpe difference RL - equal weight", _fmt(o.get("median_sharpe_diff_vs_ew"))),
            ("share of origins RL beats equal weight", _fmt(o.get("share_beats_ew"), ".1%")),
            ("share of origins RL beats ALL_SPY", _fmt(o.get("share_beats_spy"), ".1%"))], chart))
    if (n := report.get("random_null")) is not None:
        parts.append(_readout("Random null with RL's switch days", NULL_TEXT, [
            ("random policies", str(n.get("n", "-"))),
            ("RL Sharpe percentile", _fmt(n.get("rl_sharpe_percentile"), ".1f")),
            ("null median Sharpe", _fmt(n.get("sharpe_median"))),
            ("null 95th percentile Sharpe", _fmt(n.get("sharpe_p95")))]))
    rl = next((p for p in report["policies"] if p["name"] == "RL"), {})
    if "mean_entropy" in rl:
        shares = [(f"days holding {regime}", _fmt(share, ".1%"))
                  for regime, share in rl.get("regime_share", {}).items()]
        parts.append(_readout("RL behaviour", BEHAVIOUR_TEXT, [
            ("mean entropy / max", f"{_fmt(rl.get('mean_entropy'))} / {_fmt(rl.get('max_entropy'))}"),
            ("mean top probability", _fmt(rl.get("mean_max_prob"))), *shares]))
    return "<h2>Readouts</h2>\n" + "\n".join(parts) if parts else ""


def _setup(report: dict) -> str:
    """How the RL row was read out: starting portfolio, path and year length change every number."""
    r, d = report.get("readout", {}), report["data"]
    filled = d.get("days_filled")
    filled = "-" if filled is None else ", ".join(f"{t} {n}" for t, n in filled.items() if n) or "none"
    return (f"starting portfolio {html.escape(str(r.get('initial', '-')))}; "
            f"RL row: {html.escape(str(r.get('policy_mode', '-')))} path; "
            f"{d.get('periods_per_year', '-')} periods per year; "
            f"risk-free {html.escape(str(r.get('risk_free', '-')))}; "
            f"days filled {html.escape(filled)}")


def render(report: dict, frame: pd.DataFrame) -> str:
    policies = [p["name"] for p in report["policies"]]
    charts = _charts(frame, policies, report.get("rolling_origins", {}).get("origins", []))
    esc = html.escape
    rows = "".join(
        f"<tr class='{'rl' if p['name'] == 'RL' else ''}'><td>{esc(p['name'])}"
        f"{' (comparison only, unranked)' if p.get('comparison_only') else ''}</td>"
        + "".join(f"<td>{_cell(k, p.get(k))}</td>" for k in COLUMNS) + "</tr>" for p in report["policies"])
    crit = "".join(
        f"<tr><td>{esc(c['name'])}</td><td>{_num(c['value'])}</td><td>{_threshold(c['threshold'])}</td>"
        f"<td class='{'pass' if c['passed'] else 'fail'}'>{'pass' if c['passed'] else 'FAIL'}</td></tr>"
        for c in report["criteria"])
    d, c, m = report["data"], report["costs"], report["model"]
    verdict = "<span class='pass'>PASS</span>" if report["passed"] else "<span class='fail'>FAIL</span>"
    overlap = ("<p class='fail'>The test period overlaps the training period.</p>"
               if report.get("overlap_with_training") else "")
    warnings = "".join(f"<div class='warning'>Warning: {esc(w)}</div>" for w in report.get("warnings", []))
    cash = f", initial cash {c['init_cash']:,.0f}" if "init_cash" in c else ""
    head = "".join(f"<th>{HEADERS.get(k, k.replace('_', ' '))}</th>" for k in COLUMNS)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>rl-trader: RL vs baselines {esc(d['first_day'])}..{esc(d['last_day'])}</title>
<style>
{PAGE_CSS}
.warning {{ border: 2px solid #b3261e; background: #fce8e6; color: #b3261e; font-weight: bold; font-size: 15px;
  padding: 10px 14px; margin: 12px 0; }}
.explain {{ max-width: 60em; }}
img {{ max-width: 100%; }} .meta {{ color: #555; font-size: 13px; }}
</style></head><body>
<h1>RL policy vs baselines, out of sample {esc(d['first_day'])} .. {esc(d['last_day'])}: {verdict}</h1>
{warnings}
<p class="meta">{_setup(report)};
model {esc(Path(m['path']).name)} ({m['parameters']:,} parameters, {m['timesteps']:,} timesteps);
data {esc(d['source'])} {esc(','.join(d['tickers']))}, {d['days']} days, fingerprint {esc(d['fingerprint'][:16])};
fees {c['fees']:g}, slippage {c['slippage']:g}, execution {esc(c['execution'])}{cash};
environment vs vectorbt equity parity {report['parity_max_rel_diff']:.1e}</p>{overlap}
<img alt="equity curves" src="{charts['equity']}">
<img alt="drawdowns" src="{charts['drawdown']}">
<h2>Ranked by Sharpe</h2>
<table><tr><th>policy</th>{head}</tr>{rows}</table>
<h2>v2 criteria</h2>
<table><tr><th>criterion</th><th>value</th><th>threshold</th><th>result</th></tr>{crit}</table>
<img alt="regimes held" src="{charts['regimes']}">
{_readouts(report, charts)}
</body></html>
"""


def write_comparison(report_path: str | Path, html_path: str | Path) -> Path:
    report, frame = read_report(report_path)
    return atomic_write_text(html_path, render(report, frame))
