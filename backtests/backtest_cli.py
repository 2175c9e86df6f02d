"""The terminal side of `rltrader backtest`: run, print the ranked table and criteria, write files."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from backtests.evaluate import BacktestResult, load_backtest_data, run_backtest
from reports.json_report import write_report
from rl_strategy.atomic import atomic_write_text
from rl_strategy.strategy import RLPolicy

PERCENT = {"cagr", "total_return", "volatility", "max_drawdown", "turnover", "alpha"}
HEADERS = {"rank": "#", "sharpe": "Sharpe", "sortino": "Sortino", "cagr": "CAGR", "total_return": "Total",
           "volatility": "Vol", "max_drawdown": "MaxDD", "calmar": "Calmar", "turnover": "Turnover",
           "rebalances": "Rebal", "alpha": "Alpha", "information_ratio": "IR"}


def default_report_path() -> Path:
    return Path("reports") / f"eval_{datetime.now():%Y%m%d}.json"


def wide_console() -> Console:
    """At least 120 columns: the ranked table has 13 columns and is unreadable when squeezed."""
    width = Console().width
    return Console(width=max(width, 120))


def print_result(result: BacktestResult, console: Console) -> None:
    d = result.returns.index
    title = (f"Out of sample {d[0].date()}..{d[-1].date()} ({len(d)} days), fees {result.costs['fees']:g}, "
             f"slippage {result.costs['slippage']:g}, {result.costs['execution']}")
    table = Table(title=title, pad_edge=False, padding=(0, 1))
    cols = ["rank", "sharpe", "sortino", "cagr", "total_return", "volatility", "max_drawdown", "calmar",
            "turnover", "rebalances", "alpha", "information_ratio"]
    table.add_column("policy", style="bold", no_wrap=True)
    for c in cols:
        table.add_column(HEADERS[c], justify="right", no_wrap=True)
    for name, row in result.table.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if c in ("rank", "rebalances"):
                cells.append(str(int(v)))
            elif v != v:
                cells.append("-")
            else:
                cells.append(f"{100 * v:.1f}%" if c in PERCENT else f"{v:.2f}")
        table.add_row(name, *cells, style="cyan" if name == "RL" else None)
    console.print(table)

    crit = Table(title="v2 criteria" + (" [red](test period overlaps training)" if result.overlap_with_training else ""))
    for c in ("criterion", "value", "threshold", "result"):
        crit.add_column(c, justify="right" if c != "criterion" else "left")
    for c in result.criteria:
        crit.add_row(c.name, f"{c.value:.4f}", f"{c.threshold:.4f}", "[green]pass" if c.passed else "[red]FAIL")
    console.print(crit)
    console.print(f"parity (environment vs vectorbt equity): max relative difference {result.parity_max_rel_diff:.1e}")


def backtest_command(model: str, start: str | None, end: str | None, data_source: str | None, csv_dir: str | None,
                     cache_path: str | None, fees: float | None, slippage: float | None, execution: str | None,
                     output: Path | None, weights_out: Path | None, html: Path | None, benchmark: str,
                     allow_overlap: bool, check: bool, seed: int) -> BacktestResult:
    console = wide_console()
    policy = RLPolicy.load(model)
    data = load_backtest_data(policy.checkpoint, start, end, data_source, csv_dir, cache_path, None)
    result = run_backtest(policy, data, fees=fees, slippage=slippage, execution=execution,
                          allow_overlap=allow_overlap, seed=seed)
    console.print(f"model {policy.checkpoint.path} ({policy.checkpoint.spec['parameters']:,} parameters); "
                  f"data {data.source} fingerprint {data.fingerprint[:12]}")
    print_result(result, console)
    path = write_report(result, output or default_report_path())
    console.print(f"wrote {path}")
    if weights_out is not None:
        atomic_write_text(weights_out, result.weights["RL"].to_csv(float_format="%.10g"))
        console.print(f"wrote {weights_out}")
    if html is not None:
        from reports.tearsheet import write_tearsheet

        console.print(f"wrote {write_tearsheet(path, html, benchmark)}")
    verdict = "[green]all criteria pass" if result.passed else "[red]some criteria fail"
    console.print(verdict + ("" if check else " (use --check to turn failures into exit code 1)"))
    return result
