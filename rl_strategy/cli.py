"""The `rltrader` command line.

Every command imports its heavy dependencies (torch, vectorbt, quantstats) inside its body so
that `rltrader --help` answers instantly. Errors the user can fix are `RLTraderError`s: they
are printed as one line and exit with status 1, never as a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

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



# -- data --------------------------------------------------------------------------------------
@data_app.command("fetch")
def data_fetch(
    tickers: str = typer.Option("SPY,QQQ,IWM", "--tickers", help="Comma-separated tickers."),
    start: str = typer.Option("2015-01-01", "--start", help="First day (YYYY-MM-DD)."),
    end: str = typer.Option("2024-12-31", "--end", help="Last day (YYYY-MM-DD)."),
    source: str = typer.Option("synthetic", "--source", "--data-source", help=SOURCE_HELP),
    csv_dir: str | None = typer.Option(None, "--csv-dir", help=CSV_DIR_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic market."),
    cache_dir: str = typer.Option("data/cache", "--cache-dir", help="Parquet cache of yahoo downloads."),
    history_days: int = typer.Option(0, "--history-days", help="Also keep this many trading days before --start (feature warm-up)."),
    cache_out: Path | None = typer.Option(None, "--cache-out", help="Write the validated panel as a tensor cache for `rltrader train --cache-path`."),
) -> None:
    """Load and validate a panel (caching yahoo downloads) and print a summary."""
    from rich.console import Console
    from rich.table import Table

    from rl_strategy.data import load_market, save_panel_cache

    data = load_market(tickers.split(","), start, end, source=source, csv_dir=csv_dir, cache_dir=cache_dir,
                       seed=seed, history_days=history_days)
    close = data.close
    table = Table(title=f"{data.source}: {len(close) - data.history_rows()} trading days"
                  + (f" (+{data.history_rows()} history)" if data.history_rows() else ""))
    for c in ("ticker", "rows", "first day", "last day", "days forward-filled", "last close"):
        table.add_column(c, justify="left" if c == "ticker" else "right")
    for t in data.tickers:
        table.add_row(t, str(len(close)), str(close.index[0].date()), str(close.index[-1].date()),
                      str(data.filled[t]), f"{close[t].iloc[-1]:.2f}")
    console = Console()
    console.print(table)
    console.print(f"fingerprint {data.fingerprint}")
    if cache_out is not None:
        console.print(f"wrote {save_panel_cache(data, cache_out)}")

# -- training ----------------------------------------------------------------------------------
CONFIG_HELP = "YAML config (default: the packaged v2 config training/configs/rl_v2_multi_asset.yaml)."
DEVICE_HELP = "auto (CUDA when available), cpu or cuda."


def _settings(config: Path | None, **overrides):
    from training.config import load_settings

    return load_settings(config, overrides)


@app.command()
def train(
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    timesteps: int | None = typer.Option(None, "--timesteps", help="Total environment timesteps to train for."),
    n_envs: int | None = typer.Option(None, "--n-envs", help="Parallel environments (episodes) per rollout."),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    seed: int | None = typer.Option(None, "--seed", help="Seed for the policy init, sampling and episode starts."),
    data_source: str | None = typer.Option(None, "--data-source", help=SOURCE_HELP),
    csv_dir: str | None = typer.Option(None, "--csv-dir", help=CSV_DIR_HELP),
    cache_path: str | None = typer.Option(None, "--cache-path", help="Tensor cache of the training panel written by `rltrader data fetch --cache-out`."),
    out: str | None = typer.Option(None, "--out", help="Folder for checkpoints and the metrics CSV."),
    resume: Path | None = typer.Option(None, "--resume", help="Checkpoint to continue from (its config is used; --timesteps, --device and --out may change)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train the GRU policy with recurrent PPO on the config's training period."""
    from training.train_cli import train_command

    train_command(config, dict(timesteps=timesteps, n_envs=n_envs, device=device, seed=seed,
                               data_source=data_source, csv_dir=csv_dir, cache_path=cache_path, out=out),
                  resume, quiet)


# -- benchmarks --------------------------------------------------------------------------------
@bench_app.command("env")
def bench_env(
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    sizes: str = typer.Option("256,2048,8192", "--n-envs", help="Comma-separated numbers of parallel envs."),
    steps: int = typer.Option(500, "--steps", help="Timed steps per size (after 20 warm-up steps)."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    data_source: str | None = typer.Option(None, "--data-source", help=SOURCE_HELP),
    csv_dir: str | None = typer.Option(None, "--csv-dir", help=CSV_DIR_HELP),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the figures to this JSON file."),
) -> None:
    """Environment steps per second with random actions at several n_envs."""
    from training.bench import bench_env as run_bench
    from training.bench import machine
    from training.config import resolve_device

    dev = resolve_device(device)
    settings = _settings(config, **{"data.source": data_source, "data.csv_dir": csv_dir})
    rows = run_bench(settings, [int(x) for x in sizes.split(",")], steps, dev)
    _print_rows("Environment throughput (" + dev + ")", rows, ["n_envs", "steps", "seconds", "env_steps_per_second"])
    _write_json(json_out, {"benchmark": "env", "device": dev, "machine": machine(), "results": rows})


@bench_app.command("train")
def bench_train(
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    updates: int = typer.Option(3, "--updates", help="Timed PPO updates (after one warm-up update)."),
    n_envs: int | None = typer.Option(None, "--n-envs", help="Override the config's ppo.n_envs."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    data_source: str | None = typer.Option(None, "--data-source", help=SOURCE_HELP),
    csv_dir: str | None = typer.Option(None, "--csv-dir", help=CSV_DIR_HELP),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the figures to this JSON file."),
) -> None:
    """End-to-end PPO training timesteps per second at the config's settings."""
    from training.bench import bench_train as run_bench
    from training.bench import machine

    settings = _settings(config, **{"data.source": data_source, "data.csv_dir": csv_dir, "ppo.n_envs": n_envs,
                                    "run.device": device})
    row = run_bench(settings, updates)
    _print_rows("Training throughput (" + row["device"] + ")", [row],
                ["n_envs", "n_steps", "epochs", "minibatches", "timesteps", "seconds", "timesteps_per_second"])
    _write_json(json_out, {"benchmark": "train", "machine": machine(), "results": [row]})


def _print_rows(title: str, rows: list[dict], columns: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="right")
    for r in rows:
        table.add_row(*[f"{r[c]:,.0f}" if isinstance(r[c], float) and r[c] > 100 else
                        f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in columns])
    Console().print(table)


def _write_json(path: Path | None, obj: dict) -> None:
    if path is None:
        return
    import json

    from rl_strategy.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2))
    typer.echo(f"wrote {path}")


# -- backtest ----------------------------------------------------------------------------------
@app.command()
def backtest(
    model: str = typer.Option(..., "--model", "-m", help="Checkpoint path or glob (newest match is used), e.g. 'checkpoints/rl_v2/model_final_*.pt'."),
    start: str | None = typer.Option(None, "--start", help="First day of the test period (default: the checkpoint config's test_start)."),
    end: str | None = typer.Option(None, "--end", help="Last day of the test period (default: the config's test_end)."),
    data_source: str | None = typer.Option(None, "--data-source", help=SOURCE_HELP + " Default: the checkpoint's."),
    csv_dir: str | None = typer.Option(None, "--csv-dir", help=CSV_DIR_HELP),
    cache_path: str | None = typer.Option(None, "--cache-path", help="Tensor cache of the test panel (from `rltrader data fetch --cache-out`)."),
    fees: float | None = typer.Option(None, "--fees", help="Fees as a fraction of traded notional (default: the checkpoint's)."),
    slippage: float | None = typer.Option(None, "--slippage", help="Slippage as a fraction of price (default: the checkpoint's)."),
    execution: str | None = typer.Option(None, "--execution", help="next_open (fill at the next day's open) or close (fill at the decision day's close). Default: the checkpoint's."),
    output: Path | None = typer.Option(None, "--output", "-o", help="JSON report path (default reports/eval_YYYYMMDD.json); the returns CSV is written beside it."),
    weights_out: Path | None = typer.Option(None, "--weights-out", help="Also write the RL target weights (dates x assets, empty = HOLD) as CSV."),
    html: Path | None = typer.Option(None, "--html", help="Also write a quantstats HTML tearsheet of the RL policy."),
    benchmark: str = typer.Option("SPY", "--benchmark", help="Tearsheet benchmark: a ticker of the universe (e.g. SPY) or EQ_WEIGHT."),
    allow_overlap: bool = typer.Option(False, "--allow-overlap", help="Allow a test period that overlaps the training period (flagged in the report)."),
    check: bool = typer.Option(False, "--check", help="Exit with code 1 when any v2 criterion fails."),
    seed: int = typer.Option(0, "--seed", help="Seed of the RANDOM baseline."),
) -> None:
    """Backtest a checkpoint out of sample against the baselines with vectorbt; write the JSON report."""
    from backtests.backtest_cli import backtest_command

    result = backtest_command(model, start, end, data_source, csv_dir, cache_path, fees, slippage, execution,
                              output, weights_out, html, benchmark, allow_overlap, check, seed)
    if check and not result.passed:
        raise typer.Exit(1)


# -- reports -----------------------------------------------------------------------------------
@app.command()
def report(
    input: str = typer.Option(..., "--input", "-i", help="A JSON report written by `rltrader backtest`, or a quoted glob such as 'reports/eval_*.json' (newest match); its returns CSV must be beside it."),
    html: Path | None = typer.Option(None, "--html", help="quantstats tearsheet path (default: <input>.tearsheet.html)."),
    comparison: Path | None = typer.Option(None, "--comparison", help="Comparison page path (default: <input>.comparison.html)."),
    benchmark: str = typer.Option("SPY", "--benchmark", help="Tearsheet benchmark: a ticker of the universe or EQ_WEIGHT."),
) -> None:
    """Rebuild the tearsheet and the comparison page from a saved report, without re-running the policy."""
    from reports.comparison import write_comparison
    from reports.tearsheet import write_tearsheet
    from rl_strategy.paths import newest_match

    input = newest_match(input, "report")
    typer.echo(f"wrote {write_tearsheet(input, html or input.with_suffix('.tearsheet.html'), benchmark)}")
    typer.echo(f"wrote {write_comparison(input, comparison or input.with_suffix('.comparison.html'))}")


@app.command()
def quickstart(
    out: Path = typer.Option(Path("reports/quickstart"), "--out", help="Folder for the checkpoint, JSON report, tearsheet and comparison page."),
    timesteps: int = typer.Option(1_048_576, "--timesteps", help="Training budget (the v2 default is 5,000,000)."),
    n_envs: int = typer.Option(2048, "--n-envs", help="Parallel environments."),
    data_source: str = typer.Option("synthetic", "--data-source", help=SOURCE_HELP),
    csv_dir: str | None = typer.Option(None, "--csv-dir", help=CSV_DIR_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    seed: int = typer.Option(1, "--seed", help="Training seed."),
) -> None:
    """Train briefly, backtest out of sample and write every report: the whole pipeline, offline by default."""
    from reports.quickstart import quickstart as run

    if csv_dir and data_source == "synthetic":
        data_source = "csv"
    run(out, timesteps, n_envs, data_source, csv_dir, device, seed)
