"""`rltrader quickstart`: the whole pipeline in one command, offline on the synthetic market.

train (small budget) -> checkpoint -> backtest out of sample vs baselines -> JSON report,
quantstats tearsheet and comparison page, all under one folder.
"""

from __future__ import annotations

from pathlib import Path

from backtests.evaluate import load_backtest_data, run_backtest
from reports.comparison import write_comparison
from reports.json_report import write_report
from reports.tearsheet import write_tearsheet
from rl_strategy.settings import Settings
from rl_strategy.strategy import RLPolicy
from rltrader.display import print_backtest, wide_console
from training.train import build_session, run_training


def quickstart(out: Path, settings: Settings) -> dict[str, Path]:
    console = wide_console()
    p = settings.periods
    console.print(f"[bold]1/3 train[/] {settings.run.timesteps:,} timesteps on {settings.data.source} "
                  f"{p.train_start}..{p.train_end}")
    with console.status("training..."):
        result = run_training(build_session(settings))
    h = result.history
    console.print(f"    {result.seconds:.0f} s, entropy {h[0]['entropy']:.2f} -> {h[-1]['entropy']:.2f}, "
                  f"value loss {h[0]['value_loss']:.3f} -> {h[-1]['value_loss']:.3f}")

    console.print(f"[bold]2/3 backtest[/] out of sample {p.test_start}..{p.test_end} against the baselines")
    policy = RLPolicy.load(result.final_checkpoint)
    backtest = run_backtest(policy, load_backtest_data(policy.checkpoint.settings, policy.assets))
    print_backtest(backtest, console)

    console.print("[bold]3/3 reports[/]")
    report = write_report(backtest, out / "eval.json")
    paths = {"checkpoint": result.final_checkpoint, "report": report,
             "tearsheet": write_tearsheet(report, out / "tearsheet.html", "SPY"),
             "comparison": write_comparison(report, out / "comparison.html")}
    for name, path in paths.items():
        console.print(f"    {name:<11} {path}")
    return paths
