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
    source: str | None = typer.Option(None, "--source", "--data-source", help=SOURCE_HELP + " Default: synthetic, or csv with --csv-dir."),
    csv_dir: str | None = typer.Option(None, "--csv-dir", help=CSV_DIR_HELP),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the synthetic market (default 0)."),
    cache_dir: str | None = typer.Option(None, "--cache-dir", help="Parquet cache of yahoo downloads (default data/cache)."),
    history_days: int = typer.Option(0, "--history-days", help="Also keep this many trading days before --start (feature warm-up: 60, 200 with the trend feature set)."),
    signals: str = typer.Option("", "--signals", help="Comma-separated signal tickers loaded into the same panel for the feature sets but never traded (e.g. ^VIX,^TNX,TLT,GLD)."),
    cache_out: Path | None = typer.Option(None, "--cache-out", help="Write the validated panel as a tensor cache for `rltrader train --cache-path`."),
) -> None:
    """Load and validate a panel (caching yahoo downloads) and print a summary."""
    from rl_strategy.data import load_market, save_panel_cache
    from rl_strategy.settings import Settings, apply_cli

    d = apply_cli(Settings(), tickers=tickers, data_source=source, csv_dir=csv_dir, cache_dir=cache_dir,
                  data_seed=seed).data
    data = load_market(d.tickers, start, end, source=d.source, csv_dir=d.csv_dir, cache_dir=d.cache_dir,
                       seed=d.seed, history_days=history_days, signals=[t for t in signals.split(",") if t.strip()])
    from rltrader.display import print_data_summary

    print_data_summary(data)
    if cache_out is not None:
        typer.echo(f"wrote {save_panel_cache(data, cache_out)}")


# -- training ----------------------------------------------------------------------------------
CONFIG_HELP = "YAML config (default: the packaged v2 config training/configs/rl_v2_multi_asset.yaml)."
DEVICE_HELP = "auto (CUDA when available), cpu or cuda."
TICKERS_HELP = ("Comma-separated tickers to trade, e.g. XLK,XLF,XLE,XLV (default: the config's data.tickers); the "
                "regime table follows from them and regimes.families.")


def _settings(config: Path | None, **flags):
    """CLI > config file > defaults, through the one precedence function of every command."""
    from rl_strategy.settings import apply_cli
    from training.config import load_settings

    return apply_cli(load_settings(config), **flags)


@app.command()
def train(
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    timesteps: int | None = typer.Option(None, "--timesteps", help="Total environment timesteps to train for."),
    n_envs: int | None = typer.Option(None, "--n-envs", help="Parallel environments (episodes) per rollout."),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    seed: int | None = typer.Option(None, "--seed", help="Seed for the policy init, sampling and episode starts."),
    tickers: str | None = typer.Option(None, "--tickers", help=TICKERS_HELP),
    data_source: str | None = typer.Option(None, "--data-source", help=SOURCE_HELP),
    csv_dir: str | None = typer.Option(None, "--csv-dir", help=CSV_DIR_HELP),
    cache_path: str | None = typer.Option(None, "--cache-path", help="Tensor cache of the training panel written by `rltrader data fetch --cache-out`."),
    out: str | None = typer.Option(None, "--out", help="Folder for checkpoints and the metrics CSV."),
    resume: Path | None = typer.Option(None, "--resume", help="Checkpoint to continue from (its config is used; --timesteps, --device and --out may change)."),
    val_start: str | None = typer.Option(None, "--val-start", help="First day of the validation window (inside or right after the training window, never in the test window). Training decisions stop before it."),
    val_end: str | None = typer.Option(None, "--val-end", help="Last day of the validation window."),
    eval_every: int | None = typer.Option(None, "--eval-every", help="Updates between validation scores (default 5); the best checkpoint is kept as model_best_<stamp>.pt."),
    patience: int | None = typer.Option(None, "--patience", help="Stop after this many validation scores without improvement (default: never)."),
    seeds: str | None = typer.Option(None, "--seeds", help="Comma-separated seeds: train each into <out>/seed_<k>/ (sequentially) and write <out>/model_ensemble_<stamp>.pt."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train the GRU policy with recurrent PPO on the config's training period."""
    from rl_strategy.checkpoint import load_checkpoint
    from rltrader.display import print_training_summary, training_progress, wide_console
    from training.train import build_session, resume_settings, run_training

    console = wide_console(stderr=True)
    if resume is not None:
        ckpt = load_checkpoint(resume)
        settings = resume_settings(ckpt, timesteps, device, out)
    else:
        settings = _settings(config, timesteps=timesteps, n_envs=n_envs, device=device, seed=seed, tickers=tickers,
                             data_source=data_source, csv_dir=csv_dir, cache_path=cache_path, out=out,
                             val_start=val_start, val_end=val_end, eval_every=eval_every, patience=patience)
    if seeds is not None:
        _train_seeds(settings, seeds, console, quiet)
        return
    session = build_session(settings, resume=ckpt if resume is not None else None)
    if resume is not None:
        console.print(f"resuming {resume} at {session.trainer.timesteps_done:,} timesteps")
    tr, d = session.trainer, session.data
    signals = f" (signals {','.join(d.signals)})" if d.signals else ""
    console.print(f"data: {d.source} {','.join(d.tickers)}{signals} {d.period_start.date()}..{d.panel.index[-1].date()} "
                  f"({len(d.panel) - d.history_rows()} days, fingerprint {d.fingerprint[:12]}); device {session.device}; "
                  f"{tr.n_updates} updates x {tr.batch:,} timesteps"
                  + (f"; validation {settings.periods.val_start}..{settings.periods.val_end} every "
                     f"{settings.run.eval_every} updates" if session.validator is not None else ""))
    with training_progress(console, tr.n_updates * tr.batch, tr.timesteps_done, quiet) as on_update:
        result = run_training(session, on_update=on_update)
    print_training_summary(result, tr.timesteps_done, tr.batch)
    if result.interrupted:
        console.print(f"interrupted: continue with  rltrader train --resume {result.final_checkpoint}")


def _train_seeds(settings, seeds: str, console, quiet: bool) -> None:
    """`train --seeds 1,2,3`: one member per seed, sequentially, then the ensemble file."""
    from rltrader.display import training_progress
    from training.ensemble import train_seeds

    try:
        seed_list = [int(x) for x in seeds.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    total = len(seed_list) * settings.run.timesteps
    with training_progress(console, total, 0, quiet) as on_update:
        done = [0]

        def progress(stats: dict) -> None:  # members run one after another: show the whole budget
            done[0] += 1
            on_update(stats | {"timesteps": min(total, done[0] * stats["timesteps"] // stats["update"])})

        result = train_seeds(settings, seed_list, on_update=progress)
    for seed, member in zip(result.seeds, result.members, strict=False):
        console.print(f"seed {seed}: {member}")
    console.print(f"wrote {result.ensemble}" if result.ensemble else "interrupted: no ensemble written")


# -- benchmarks --------------------------------------------------------------------------------
@bench_app.command("env")
def bench_env(
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    sizes: str = typer.Option("256,2048,8192", "--n-envs", help="Comma-separated numbers of parallel envs."),
    steps: int = typer.Option(500, "--steps", help="Timed steps per size (after 20 warm-up steps)."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    tickers: str | None = typer.Option(None, "--tickers", help=TICKERS_HELP),
    data_source: str | None = typer.Option(None, "--data-source", help=SOURCE_HELP),
    csv_dir: str | None = typer.Option(None, "--csv-dir", help=CSV_DIR_HELP),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the figures to this JSON file."),
) -> None:
    """Environment steps per second with random actions at several n_envs."""
    from rl_strategy.settings import resolve_device
    from rltrader.display import print_rows
    from training.bench import bench_env as run_bench
    from training.bench import machine

    dev = resolve_device(device)
    settings = _settings(config, tickers=tickers, data_source=data_source, csv_dir=csv_dir)
    rows = run_bench(settings, [int(x) for x in sizes.split(",")], steps, dev)
    print_rows("Environment throughput (" + dev + ")", rows, ["n_envs", "steps", "seconds", "env_steps_per_second"])
    _write_json(json_out, {"benchmark": "env", "device": dev, "machine": machine(), "results": rows})


@bench_app.command("train")
def bench_train(
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    updates: int = typer.Option(3, "--updates", help="Timed PPO updates (after one warm-up update)."),
    n_envs: int | None = typer.Option(None, "--n-envs", help="Override the config's ppo.n_envs."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    tickers: str | None = typer.Option(None, "--tickers", help=TICKERS_HELP),
    data_source: str | None = typer.Option(None, "--data-source", help=SOURCE_HELP),
    csv_dir: str | None = typer.Option(None, "--csv-dir", help=CSV_DIR_HELP),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the figures to this JSON file."),
) -> None:
    """End-to-end PPO training timesteps per second at the config's settings."""
    from rltrader.display import print_rows
    from training.bench import bench_train as run_bench
    from training.bench import machine

    settings = _settings(config, tickers=tickers, data_source=data_source, csv_dir=csv_dir, n_envs=n_envs,
                         device=device)
    row = run_bench(settings, updates)
    print_rows("Training throughput (" + row["device"] + ")", [row],
               ["n_envs", "n_steps", "epochs", "minibatches", "timesteps", "seconds", "timesteps_per_second"])
    _write_json(json_out, {"benchmark": "train", "machine": machine(), "results": [row]})


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
    check: bool = typer.Option(False, "--check", help="Exit with code 1 when any criterion fails."),
    reference: str | None = typer.Option(None, "--reference", help="Sharpe reference of the gap criterion rl_sharpe_vs_<reference> (default: the checkpoint config's criteria.reference, ALL_SPY): a baseline (ALL_SPY, EQ_BUY_HOLD, ...) or a ticker outside the universe, loaded from the data source and bought and held with the same costs as a comparison-only row REF_<ticker>."),
    samples: int = typer.Option(64, "--samples", help="Sampled paths of the stochastic policy (the policy as trained), reported as a Sharpe band beside the greedy path."),
    policy_mode: str = typer.Option("greedy", "--policy-mode", help="Which path is the table's RL row and feeds the criteria: greedy (argmax) or sample (the sampled path of median Sharpe). The other is always reported."),
    origins: str = typer.Option("monthly", "--origins", help="Rolling origins: monthly (restart the policy on the first trading day of every month, fresh memory and the --initial portfolio) or none."),
    horizon_days: int = typer.Option(252, "--horizon-days", help="Decision days per rolling origin (clipped at the period end)."),
    initial: str = typer.Option("cash", "--initial", help="Starting portfolio of the policy and every baseline: cash, or a regime name such as EQ_WEIGHT (held from the close before the first decision, at no cost)."),
    null_draws: int = typer.Option(200, "--null-draws", help="Random policies in the fair null (they switch regime on RL's switch days)."),
    baseline_overlay: bool = typer.Option(False, "--baseline-overlay", help="Run the baselines, RANDOM and the null through the checkpoint's risk overlays (volatility target, drawdown brake, rebalance band), so they are compared under the same rule as RL."),
    risk_free: str | None = typer.Option(None, "--risk-free", help="Risk-free rate for Sharpe and Sortino: an annual rate (0.02) or a ticker of annual yields in percent in the data source (^IRX). Default 0."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampled paths and of the random null (RANDOM is its first draw)."),
) -> None:
    """Backtest a checkpoint out of sample against the baselines with vectorbt; write the JSON report."""
    from datetime import datetime

    from backtests.evaluate import EvalOptions, backtest_settings, load_backtest_data, risk_free_rates, run_backtest
    from reports.json_report import write_report
    from rl_strategy.atomic import atomic_write_text
    from rl_strategy.strategy import RLPolicy
    from rltrader.display import print_backtest, wide_console

    console = wide_console()
    policy = RLPolicy.load(model)
    settings = backtest_settings(policy.checkpoint, data_source=data_source, csv_dir=csv_dir, cache_path=cache_path,
                                 fees=fees, slippage=slippage, execution=execution, reference=reference)
    data = load_backtest_data(settings, policy.assets, start, end)
    e = settings.env
    options = EvalOptions(samples=samples, policy_mode=policy_mode, origins=origins, horizon_days=horizon_days,
                          initial=initial, null_draws=null_draws, seed=seed, baseline_overlay=baseline_overlay)
    result = run_backtest(policy, data, fees=e.fees, slippage=e.slippage, execution=e.execution,
                          thresholds=settings.criteria, allow_overlap=allow_overlap, options=options,
                          risk_free=risk_free_rates(risk_free, settings, data))
    console.print(f"model {policy.checkpoint.path} ({policy.checkpoint.spec.parameters:,} parameters); "
                  f"data {data.source} fingerprint {data.fingerprint[:12]}")
    print_backtest(result, console)
    path = write_report(result, output or Path("reports") / f"eval_{datetime.now():%Y%m%d}.json")
    console.print(f"wrote {path}")
    if weights_out is not None:
        atomic_write_text(weights_out, result.weights["RL"].to_csv(float_format="%.10g"))
        console.print(f"wrote {weights_out}")
    if html is not None:
        from reports.tearsheet import write_tearsheet

        console.print(f"wrote {write_tearsheet(path, html, benchmark)}")
    verdict = "[green]all criteria pass" if result.passed else "[red]some criteria fail"
    console.print(verdict + ("" if check else " (use --check to turn failures into exit code 1)"))
    if check and not result.passed:
        raise typer.Exit(1)


# -- walk-forward ------------------------------------------------------------------------------
@app.command()
def walkforward(
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    start: str = typer.Option("2005-01-01", "--start", help="First day of the first training window (YYYY-MM-DD)."),
    end: str = typer.Option("2024-12-31", "--end", help="Last test day (the last test window is clipped here)."),
    train_years: int = typer.Option(5, "--train-years", help="Years per training window (its validation window included)."),
    val_years: int = typer.Option(1, "--val-years", help="The last years of each training window that select the checkpoint (as train --val-start/--val-end: training decisions stop before them); 0 = no validation, the final checkpoint."),
    test_years: int = typer.Option(1, "--test-years", help="Years per test window, right after its training window."),
    step_years: int | None = typer.Option(None, "--step-years", help="Years between fold starts (default: --test-years, so test windows follow each other)."),
    seeds: int = typer.Option(3, "--seeds", help="Seeds 1..N trained per fold; each fold's seeds are also combined into an ensemble."),
    timesteps: int | None = typer.Option(None, "--timesteps", help="Training budget of each (fold, seed) pair (default: the config's)."),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    data_source: str | None = typer.Option(None, "--data-source", help=SOURCE_HELP),
    csv_dir: str | None = typer.Option(None, "--csv-dir", help=CSV_DIR_HELP),
    cache_path: str | None = typer.Option(None, "--cache-path", help="Tensor cache covering every window (from `rltrader data fetch --cache-out`)."),
    data_seed: int | None = typer.Option(None, "--data-seed", help="Seed of the synthetic market (default: the config's)."),
    out: Path = typer.Option(Path("reports/walkforward"), "--out", help="Folder of every pair's checkpoints and result.json, the fold ensembles, walkforward.json and walkforward.html. Rerunning with the same folder trains only the pairs without a result.json."),
    backend: str = typer.Option("local", "--backend", help='Where pairs train: local (a process pool) or ray (needs pip install -e ".\\[ray]").'),
    workers: int | None = typer.Option(None, "--workers", help="Pairs trained at once (default: CPU count / --cpus-per-task); for ray, the size of the local instance started when --ray-address is not given."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Address of a running Ray cluster (default: start a local instance for the run)."),
    cpus_per_task: int = typer.Option(1, "--cpus-per-task", help="torch threads (and Ray CPUs) per pair."),
    restart_each_fold: bool = typer.Option(False, "--restart-each-fold", help="Start every fold's test window from cash instead of the holdings the previous fold ended with."),
    samples: int = typer.Option(32, "--samples", help="Sampled paths per fold backtest and per stitched policy."),
    null_draws: int = typer.Option(200, "--null-draws", help="Random policies in each fold backtest's fair null."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Walk-forward: train, select and test on rolling windows; stitch the test windows into one out-of-sample account."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from backtests.backends import BackendOptions
    from backtests.walkforward import WalkforwardOptions, run_walkforward
    from reports.walkforward_report import write_walkforward_html
    from rltrader.display import wide_console

    console = wide_console()
    settings = _settings(config, timesteps=timesteps, device=device, data_source=data_source, csv_dir=csv_dir,
                         cache_path=cache_path, data_seed=data_seed)
    plan = WalkforwardOptions(start=start, end=end, out=str(out), train_years=train_years, val_years=val_years,
                              test_years=test_years, step_years=step_years, seeds=seeds, samples=samples,
                              null_draws=null_draws, restart_each_fold=restart_each_fold)
    options = BackendOptions(backend=backend, workers=workers, cpus_per_task=cpus_per_task, ray_address=ray_address)
    plan.folds(), options.check()  # bad input is one line before the progress bar starts
    progress = Progress(TextColumn("[bold]walk-forward"), BarColumn(bar_width=30), MofNCompleteColumn(),
                        TextColumn("(fold, seed) pairs"), TimeElapsedColumn(), console=console, disable=quiet)
    with progress:
        task = progress.add_task("pairs", total=None)
        result = run_walkforward(settings, plan, options,
                                 on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    report = result.report
    _print_walkforward(report, console)
    console.print(f"wrote {result.path}")
    if report["stitched"] is not None:
        console.print(f"wrote {write_walkforward_html(result.path, out / 'walkforward.html')}")
    if report["failed"]:
        for f in report["failed"]:
            console.print(f"[bold red]fold {f['fold']} seed {f['seed']} failed: {f['error']}")
        console.print(f"[red]rerun with --out {out} to retry the failed pairs (finished pairs are kept)")
        raise typer.Exit(1)


def _print_walkforward(report: dict, console) -> None:
    """Per-fold rows, the stitched summary and the significance figures."""
    from rich.table import Table

    from rltrader.display import metric_cell

    seeds = sorted({s for f in report["folds"] for s in f["seeds"]}, key=int)
    folds = Table(title="Walk-forward folds (Sharpe of each fold's own backtest, from cash)")
    for c in ("fold", "windows", *[f"seed {s}" for s in seeds], "ensemble", "best baseline", "null pct", "criteria"):
        folds.add_column(c, justify="left" if c in ("windows", "best baseline") else "right", no_wrap=True)
    for f in report["folds"]:
        ens, best = f["ensemble"], f["best_baseline"]
        windows = (f"train {f['train_start']}..{f['train_decisions_end']}\n"
                   + (f"val   {f['val_start']}..{f['val_end']}\n" if f["val_start"] else "")
                   + f"test  {f['test_start']}..{f['test_end']}")
        folds.add_row(str(f["fold"]), windows,
                      *[metric_cell("sharpe", f["seeds"][s]["rl"]["sharpe"]) if s in f["seeds"] else "[red]failed"
                        for s in seeds],
                      metric_cell("sharpe", ens["rl"]["sharpe"]) if ens else "-",
                      f"{best['name']} {metric_cell('sharpe', best['sharpe'])}" if best else "-",
                      "-" if f["null_percentile"] is None else f"{f['null_percentile']:.0f}",
                      "-" if f["passed"] is None else "[green]pass" if f["passed"] else "[red]FAIL")
    console.print(folds)
    st, sig = report["stitched"], report["significance"]
    if st is None:
        return
    cols = ("sharpe", "total_return", "max_drawdown", "turnover")
    table = Table(title=f"Stitched out of sample {st['first_day']}..{st['last_day']} ({st['days']} days, {st['mode']}; "
                        f"parity {st['parity_max_rel_diff']:.1e})")
    for c in ("policy", *cols, "sampled Sharpe median (5..95%)"):
        table.add_column(c, justify="left" if c == "policy" else "right")
    for name, p in st["policies"].items():
        s = st["sampled"].get(name)
        band = "" if s is None else (f"{metric_cell('sharpe', s['sharpe']['median'])} ({metric_cell('sharpe', s['sharpe']['p05'])}"
                                     f"..{metric_cell('sharpe', s['sharpe']['p95'])})")
        table.add_row(name, *[metric_cell(c, p[c]) for c in cols], band, style="cyan" if name == "RL" else None)
    console.print(table)
    if sig is not None:
        ci = sig["bootstrap_ci_sharpe_diff"]
        console.print(f"significance ({sig['readout']}, benchmark {sig['benchmark']}, {sig['n_trials']} trials): "
                      f"PSR vs 0 {metric_cell('sharpe', sig['psr_vs_zero'])}, PSR vs benchmark "
                      f"{metric_cell('sharpe', sig['psr_vs_benchmark'])}, DSR {metric_cell('sharpe', sig['dsr'])}, "
                      f"Sharpe difference vs benchmark 95% CI {metric_cell('sharpe', ci[0])}..{metric_cell('sharpe', ci[1])}, "
                      f"SPA p-value {metric_cell('sharpe', sig['spa_pvalue'])}")


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
    data_source: str | None = typer.Option(None, "--data-source", help=SOURCE_HELP + " Default: synthetic, or csv with --csv-dir."),
    csv_dir: str | None = typer.Option(None, "--csv-dir", help=CSV_DIR_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    seed: int = typer.Option(1, "--seed", help="Training seed."),
) -> None:
    """Train briefly, backtest out of sample and write every report: the whole pipeline, offline by default."""
    from rltrader.quickstart import quickstart as run

    run(out, _settings(None, timesteps=timesteps, n_envs=n_envs, data_source=data_source, csv_dir=csv_dir,
                       device=device, seed=seed, out=str(out / "checkpoints"), checkpoint_every=10_000))
