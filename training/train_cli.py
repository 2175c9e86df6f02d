"""The terminal side of `rltrader train`: progress bar, final summary."""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from rl_strategy.checkpoint import load_checkpoint
from training.config import load_settings
from training.train import build_session, resume_settings, run_training

_FLAG_KEYS = {"timesteps": "run.timesteps", "n_envs": "ppo.n_envs", "device": "run.device", "seed": "run.seed",
              "data_source": "data.source", "csv_dir": "data.csv_dir", "cache_path": "data.cache_path",
              "out": "run.out"}


def train_command(config: Path | None, flags: dict, resume: Path | None, quiet: bool) -> None:
    console = Console(stderr=True)
    if resume is not None:
        ckpt = load_checkpoint(resume)
        settings = resume_settings(ckpt, flags.get("timesteps"), flags.get("device"), flags.get("out"))
        session = build_session(settings, resume=ckpt)
        console.print(f"resuming {resume} at {session.trainer.timesteps_done:,} timesteps")
    else:
        if flags.get("csv_dir") and not flags.get("data_source"):
            flags["data_source"] = "csv"
        settings = load_settings(config, {_FLAG_KEYS[k]: v for k, v in flags.items()})
        session = build_session(settings)
    tr = session.trainer
    d = session.data
    console.print(f"data: {d.source} {','.join(d.tickers)} {d.period_start.date()}..{d.panel.index[-1].date()} "
                  f"({len(d.panel) - d.history_rows()} days, fingerprint {d.fingerprint[:12]}); device {session.device}; "
                  f"{tr.n_updates} updates x {tr.batch:,} timesteps")

    progress = Progress(TextColumn("[bold]train"), BarColumn(bar_width=20), TextColumn("{task.fields[steps]}"),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console, disable=quiet)
    total = tr.n_updates * tr.batch
    with progress:
        task = progress.add_task("train", total=total, completed=tr.timesteps_done, info="",
                                 steps=f"{tr.timesteps_done / 1e6:.2f}M/{total / 1e6:.2f}M")

        last_reward = [math.nan]  # episodes end every episode_length steps: show the latest mean

        def on_update(stats: dict) -> None:
            if not math.isnan(stats["episode_reward"]):
                last_reward[0] = stats["episode_reward"]
            info = (f"{stats['steps_per_second'] / 1e3:.1f}K steps/s entropy {stats['entropy']:.2f}"
                    + ("" if math.isnan(last_reward[0]) else f" ep.reward {last_reward[0]:+.1f}"))
            progress.update(task, completed=stats["timesteps"], info=info,
                            steps=f"{stats['timesteps'] / 1e6:.2f}M/{total / 1e6:.2f}M")

        result = run_training(session, on_update=on_update)

    table = Table(title="training summary" + (" (interrupted)" if result.interrupted else ""))
    table.add_column("what")
    table.add_column("value", justify="right", overflow="fold")
    h = result.history
    rewards = [x["episode_reward"] for x in h if not math.isnan(x["episode_reward"])]
    rows = [("timesteps", f"{tr.timesteps_done:,}"), ("wall time", f"{result.seconds:.1f} s"),
            ("timesteps/s", f"{len(h) * tr.batch / result.seconds:,.0f}"),
            ("entropy first -> last", f"{h[0]['entropy']:.3f} -> {h[-1]['entropy']:.3f}" if h else "-"),
            ("value loss first -> last", f"{h[0]['value_loss']:.3f} -> {h[-1]['value_loss']:.3f}" if h else "-"),
            ("episode reward first -> last", f"{rewards[0]:+.2f} -> {rewards[-1]:+.2f}" if rewards else "-"),
            ("checkpoint", str(result.final_checkpoint)), ("metrics", str(result.metrics_csv))]
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)
    if result.interrupted:
        console.print(f"interrupted: continue with  rltrader train --resume {result.final_checkpoint}")
