"""The `rltrader` command line.

Every command imports its heavy dependencies (torch, vectorbt, quantstats) inside its body so
that `rltrader --help` answers instantly. Errors the user can fix are `RLTraderError`s: they
are printed as one line and exit with status 1, never as a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from rl_strategy.errors import RLTraderError

app = typer.Typer(
    help="rl-trader: train a GRU regime-allocation policy with PPO and backtest it with vectorbt.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Load, validate and cache market data.", no_args_is_help=True)
bench_app = typer.Typer(help="Reproducible throughput benchmarks.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")

SOURCE_HELP = "Where prices come from: synthetic (embedded, offline), csv (a folder of yfinance CSVs) or yahoo (download + local parquet cache)."
CSV_DIR_HELP = "Folder with one <TICKER>.csv per ticker in yfinance's to_csv layout (for --data-source csv)."


def main() -> None:
    """Console-script entry point: run the app, turn RLTraderError into a one-line error."""
    try:
        app()
    except RLTraderError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)
