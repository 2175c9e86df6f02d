"""What the terminal shows: ranked tables, criteria, training progress and summaries (rich)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from backtests.metrics import COUNT_METRICS, METRICS, PERCENT_METRICS

if TYPE_CHECKING:
    from backtests.evaluate import BacktestResult

HEADERS = {"rank": "#", "sharpe": "Sharpe", "sortino": "Sortino", "cagr": "CAGR", "total_return": "Total",
           "volatility": "Vol", "max_drawdown": "MaxDD", "calmar": "Calmar", "turnover": "Turn/day", "turnover_annual": "Turn/yr",
           "rebalances": "Rebal", "alpha": "Alpha", "information_ratio": "IR", "time_in_market": "InMkt",
           "first_trade": "1st trade"}


def wide_console(stderr: bool = False) -> Console:
    """At least 150 columns: the ranked table has 16 columns and is unreadable when squeezed."""
    width = Console().width
    return Console(width=max(width, 150), stderr=stderr)


def metric_cell(key: str, value) -> str:
    if value is None or value != value:
        return "-"
    if key == "first_trade":
        return str(value)
    if key in COUNT_METRICS:
        return str(int(value))
    return f"{100 * value:.1f}%" if key in PERCENT_METRICS | {"time_in_market"} else f"{value:.2f}"


def print_backtest(result: BacktestResult, console: Console) -> None:
    d = result.returns.index
    o = result.options
    title = (f"Out of sample {d[0].date()}..{d[-1].date()} ({len(d)} days, {result.periods_per_year}/yr), "
             f"fees {result.costs['fees']:g}, slippage {result.costs['slippage']:g}, {result.costs['execution']}, "
             f"start {o.initial}, RL row = {o.policy_mode} path")
    table = Table(title=title, pad_edge=False, padding=(0, 1),
                  caption="Turn/day: mean daily one-way turnover incl. the cash leg (CASH -> 100% SPY = 100%); "
                          "Turn/yr = x days per year")
    cols = ["rank", *METRICS, "time_in_market", "first_trade"]
    table.add_column("policy", style="bold", no_wrap=True)
    for c in cols:
        table.add_column(HEADERS[c], justify="right", no_wrap=True)
    for name, row in result.table.iterrows():
        style = "cyan" if name == "RL" else "dim" if name in result.comparison_only else None
        table.add_row(name + (" (comparison only)" if name in result.comparison_only else ""),
                      *[metric_cell(c, row[c]) for c in cols], style=style)
    console.print(table)

    crit = Table(title="v2 criteria" + (" [red](test period overlaps training)" if result.overlap_with_training else ""))
    for c in ("criterion", "value", "threshold", "result"):
        crit.add_column(c, justify="right" if c != "criterion" else "left")
    for c in result.criteria:
        crit.add_row(c.name, f"{c.value:.4f}", c.threshold_text(), "[green]pass" if c.passed else "[red]FAIL")
    console.print(crit)
    print_readouts(result, console)
    console.print(f"parity (environment vs vectorbt equity, every RL path): max relative difference "
                  f"{result.parity_max_rel_diff:.1e}")


def print_readouts(result: BacktestResult, console: Console) -> None:
    """The spread behind the RL row: sampled paths, rolling origins, the random null, behaviour."""
    s, r, n, b = result.rl_sampled, result.rolling_origins, result.random_null, result.rl_behaviour
    t = Table(title="RL readouts", show_header=False)
    t.add_column("readout", style="bold")
    t.add_column("value", overflow="fold")
    t.add_row("greedy path", f"Sharpe {s['greedy_sharpe']:.2f}, at the {s['greedy_sharpe_percentile']:.0f}th percentile "
                             f"of the sampled paths")
    t.add_row(f"sampled paths ({s['n']})", f"median Sharpe {s['sharpe_median']:.2f} (5-95%: {s['sharpe_p05']:.2f}.."
                                           f"{s['sharpe_p95']:.2f}), median total return {100 * s['total_return_median']:.1f}%")
    if r["n"]:
        spy = "" if r["share_beats_spy"] is None else f", beats ALL_SPY in {100 * r['share_beats_spy']:.0f}%"
        t.add_row(f"rolling origins ({r['n']} x {r['horizon_days']}d, {r['mode']})",
                  f"median Sharpe RL - equal weight {r['median_sharpe_diff_vs_ew']:+.2f}; RL beats equal weight in "
                  f"{100 * r['share_beats_ew']:.0f}% of origins{spy}")
    t.add_row(f"random null ({n['n']})", f"RL Sharpe at the {n['rl_sharpe_percentile']:.0f}th percentile (null median "
                                          f"{n['sharpe_median']:.2f}, 95th {n['sharpe_p95']:.2f})")
    t.add_row("greedy behaviour", f"entropy {b['mean_entropy']:.2f} of {b['max_entropy']:.2f} max, mean top probability "
                                  f"{b['mean_max_prob']:.2f}; held " + ", ".join(
                                      f"{k} {100 * v:.0f}%" for k, v in sorted(b["regime_share"].items(),
                                                                              key=lambda kv: -kv[1])))
    console.print(t)
    for w in result.warnings:
        console.print(f"[bold red]warning: {w}")


def print_rows(title: str, rows: list[dict], columns: list[str]) -> None:
    """A benchmark table: large floats with thousands separators, small ones with 3 decimals."""
    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="right")
    for r in rows:
        table.add_row(*[f"{r[c]:,.0f}" if isinstance(r[c], float) and r[c] > 100 else
                        f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in columns])
    Console().print(table)


@contextmanager
def training_progress(console: Console, total: int, done: int, quiet: bool) -> Iterator[Callable[[dict], None]]:
    """A progress bar over timesteps; yields the per-update callback of `run_training`."""
    progress = Progress(TextColumn("[bold]train"), BarColumn(bar_width=20), TextColumn("{task.fields[steps]}"),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console, disable=quiet)
    last_reward = [math.nan]  # episodes end every episode_length steps: show the latest mean
    last_val = [math.nan]  # validation runs every eval_every updates: show the latest score

    with progress:
        task = progress.add_task("train", total=total, completed=done, info="",
                                 steps=f"{done / 1e6:.2f}M/{total / 1e6:.2f}M")

        def on_update(stats: dict) -> None:
            if not math.isnan(stats["episode_reward"]):
                last_reward[0] = stats["episode_reward"]
            if "val_score" in stats:
                last_val[0] = stats["val_score"]
            info = (f"{stats['steps_per_second'] / 1e3:.1f}K steps/s entropy {stats['entropy']:.2f}"
                    + ("" if math.isnan(last_reward[0]) else f" ep.reward {last_reward[0]:+.1f}")
                    + ("" if math.isnan(last_val[0]) else f" val {last_val[0]:+.2f}"))
            progress.update(task, completed=stats["timesteps"], info=info,
                            steps=f"{stats['timesteps'] / 1e6:.2f}M/{total / 1e6:.2f}M")

        yield on_update


def print_training_summary(result, timesteps_done: int, batch: int) -> None:
    """`result` is a training.train.TrainResult."""
    table = Table(title="training summary" + (" (interrupted)" if result.interrupted else ""))
    table.add_column("what")
    table.add_column("value", justify="right", overflow="fold")
    h = result.history
    rewards = [x["episode_reward"] for x in h if not math.isnan(x["episode_reward"])]
    rows = [("timesteps", f"{timesteps_done:,}"), ("wall time", f"{result.seconds:.1f} s"),
            ("timesteps/s", f"{len(h) * batch / result.seconds:,.0f}"),
            ("entropy first -> last", f"{h[0]['entropy']:.3f} -> {h[-1]['entropy']:.3f}" if h else "-"),
            ("value loss first -> last", f"{h[0]['value_loss']:.3f} -> {h[-1]['value_loss']:.3f}" if h else "-"),
            ("episode reward first -> last", f"{rewards[0]:+.2f} -> {rewards[-1]:+.2f}" if rewards else "-"),
            ("checkpoint", str(result.final_checkpoint)), ("metrics", str(result.metrics_csv))]
    if result.best_checkpoint is not None:
        scores = [x["val_score"] for x in h if "val_score" in x]
        rows += [("validation score first -> best", f"{scores[0]:+.3f} -> {result.best_score:+.3f}"
                  + (" (stopped early)" if result.stopped_early else "")),
                 ("best checkpoint (validation)", str(result.best_checkpoint))]
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)


def print_data_summary(data) -> None:
    """`data` is a rl_strategy.data.MarketData: one row per ticker, then the fingerprint."""
    close = data.panel["Close"]
    table = Table(title=f"{data.source}: {len(close) - data.history_rows()} trading days"
                  + (f" (+{data.history_rows()} history)" if data.history_rows() else ""))
    for c in ("ticker", "rows", "first day", "last day", "days filled flat", "last close"):
        table.add_column(c, justify="left" if c == "ticker" else "right")
    for t in (*data.tickers, *data.signals):
        table.add_row(t + (" (signal)" if t in data.signals else ""), str(len(close)), str(close.index[0].date()),
                      str(close.index[-1].date()), str(data.filled[t]), f"{close[t].iloc[-1]:.2f}")
    console = Console()
    console.print(table)
    console.print(f"fingerprint {data.fingerprint}")
