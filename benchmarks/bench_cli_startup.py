"""How long the commands that should answer at once take: ``mae-domains --help``, ``adapters`` (listing),
``recipes``, ``config show`` and a config error, each in a fresh process, against two baselines measured in
the same rounds: a bare interpreter (``python -c pass``) and ``import torch`` (what the commands avoid).
Target: under 1.5 s each on the 2-core CPU this project is tested on. ``adapters NAME`` imports that one
adapter and is shown for comparison.

    python benchmarks/bench_cli_startup.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CLI = [sys.executable, "-m", "mae_domains.cli"]
CASES = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "import torch (baseline)": [sys.executable, "-c", "import torch"],
    "mae-domains --help": [*CLI, "--help"],
    "mae-domains adapters": [*CLI, "adapters"],
    "mae-domains recipes": [*CLI, "recipes"],
    "mae-domains config show --config medical_xray_vit_base": [*CLI, "config", "show", "--config", "medical_xray_vit_base"],
    "config error (unknown key)": [*CLI, "pretrain", "--config", "demo", "--data", ".", "model.presett=tiny"],
    "mae-domains adapters image (imports one adapter)": [*CLI, "adapters", "image"],
    "importing every adapter (how adapters listed before)": [
        sys.executable, "-c", "from mae_domains.registry import discover_adapters; discover_adapters()"],
}
TARGET_S = 1.5


def wall_time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is shown")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in CASES}
    wall_time(CASES["mae-domains --help"])  # warm the file cache once
    for _ in range(args.rounds):
        for name, cmd in CASES.items():
            times[name].append(wall_time(cmd))
    bare = statistics.median(times["python -c pass (baseline)"])
    torch_s = statistics.median(times["import torch (baseline)"])
    print(f"median of {args.rounds} interleaved rounds, fresh process each; target {TARGET_S} s")
    print(f"{'command':<58} {'s':>7} {'- bare python':>14} {'/ import torch':>15}  target")
    for name, values in times.items():
        median = statistics.median(values)
        verdict = "" if "baseline" in name or "import" in name else ("ok" if median < TARGET_S else "MISSED")
        print(f"{name:<58} {median:7.3f} {median - bare:14.3f} {median / torch_s:15.2f}  {verdict}")


if __name__ == "__main__":
    main()
