"""`rltrader quickstart`: the whole pipeline in one command, offline on the synthetic market.

train (small budget) -> checkpoint -> backtest out of sample vs baselines -> JSON report,
quantstats tearsheet and comparison page, all under one folder.
"""

from __future__ import annotations

from pathlib import Path

from backtests.backtest_cli import print_result, wide_console
from backtests.evaluate import load_backtest_data, run_backtest
from reports.comparison import write_comparison
from reports.json_report import write_report
from reports.tearsheet import write_tearsheet
from rl_strategy.strategy import RLPolicy
from training.config import load_settings
from training.train import build_session, run_training


def quickstart(out: Path, timesteps: int, n_envs: int, source: str, csv_dir: str | None, device: str,
               seed: int) -> dict[str, Path]:
    console = wide_console()
    settings = load_settings(None, {"run.timesteps": timesteps, "ppo.n_envs": n_envs, "data.source": source,
                                    "data.csv_dir": csv_dir, "run.device": device, "run.seed": seed,
                                    "run.out": str(out / "checkpoints"), "run.checkpoint_every": 10_000})
    p = settings.periods
    console.print(f"[bold]1/3 train[/] {timesteps:,} timesteps on {source} {p.train_start}..{p.train_end}")
    with console.status("training..."):
        session = build_session(settings)
        result = run_training(session)
    h = result.history
    console.print(f"    {result.seconds:.0f} s, entropy {h[0]['entropy']:.2f} -> {h[-1]['entropy']:.2f}, "
                  f"value loss {h[0]['value_loss']:.3f} -> {h[-1]['value_loss']:.3f}")

    console.print(f"[bold]2/3 backtest[/] out of sample {p.test_start}..{p.test_end} against the baselines")
    policy = RLPolicy.load(result.final_checkpoint)
    data = load_backtest_data(policy.checkpoint, None, None, None, None, None, None)
    backtest = run_backtest(policy, data)
    print_result(backtest, console)

    console.print("[bold]3/3 reports[/]")
    report = write_report(backtest, out / "eval.json")
    paths = {"checkpoint": result.final_checkpoint, "report": report,
             "tearsheet": write_tearsheet(report, out / "tearsheet.html", "SPY"),
             "comparison": write_comparison(report, out / "comparison.html")}
    for name, path in paths.items():
        console.print(f"    {name:<11} {path}")
    return paths
