"""One command per field: pretrain on a prepared real dataset, evaluate against baselines, write ``results.md``.

``python benchmarks/real/study.py benchmarks/real/remote_sensing.yaml --budget cpu`` runs three stages
(``--stages`` picks some; a finished stage's outputs are reused):

1. pretrain: the study's ``recipe`` (a run config) at the budget's ``steps``, keeping a copy of the
   checkpoint at every ``keep`` step (``<out>/pretrain/steps/stepNNNNNNN/checkpoint.pt``); wall time and
   machine go to ``<out>/pretrain/study.json``;
2. evaluate: one benchmark spec (:func:`mae_domains.evaluation.run_benchmark`): the kept checkpoints (with
   ``evaluate.adapter_options`` over the run's reading options, e.g. ``chips_per_scene: auto`` so that a
   labelled chip file is one sample, not as many random windows as a pretraining scene gets), a
   random-init encoder of the same architecture and the raw pixels; every dataset at every label fraction
   (``train_fraction``, stratified); ``frozen`` protocols on every checkpoint and baseline, ``trained``
   protocols on the final checkpoint and random init at the ``trained_fractions`` (default: every label
   fraction); a dataset entry with its own ``protocols`` (e.g. ``segmentation`` on a ``manifest`` of
   image/label pairs) is evaluated only with those, on all its labels, on the final checkpoint and random
   init; records in ``<out>/eval/results.jsonl``; a dataset's ``bootstrap_groups`` (a ``path,<unit>`` CSV of
   the data folder) is for the report only;
3. report: ``<out>/results.md`` (machine, versions, budget, wall time, one table per protocol and metric with
   the mean over seeds and a 95 % interval) and plots of each metric against the pretraining step and
   against the label fraction (:mod:`study_report`); where a dataset names ``bootstrap_groups``, its
   headline intervals and paired comparisons resample whole groups (slices, spatial blocks).

Study files live beside this script (``remote_sensing.yaml``, ``microscopy.yaml``, ``medical.yaml``);
``--data-root`` is where the preparation scripts wrote their folders. A missing dataset or a bad study
file ends with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_report import write_results  # noqa: E402

STAGES = ("pretrain", "evaluate", "report")
STUDY_KEYS = {"field", "title", "data", "prepare", "recipe", "budgets", "evaluate"}
EVALUATE_KEYS = {"datasets", "label_fractions", "seeds", "frozen", "trained", "protocols", "batch_size", "num_workers",
                 "adapter_options", "trained_fractions"}
log = logging.getLogger("study")


class StudyError(Exception):
    """A user-facing problem with the study file or the data: one line, exit code 2."""


def load_study(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        study = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise StudyError(f"{path}: study file not found") from None
    if not isinstance(study, dict):
        raise StudyError(f"{path}: the top level must be a mapping")
    unknown = set(study) - STUDY_KEYS
    missing = {"field", "data", "recipe", "budgets", "evaluate"} - set(study)
    if unknown or missing:
        raise StudyError(f"{path}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
    unknown = set(study["evaluate"]) - EVALUATE_KEYS
    if unknown:
        raise StudyError(f"{path}: evaluate: unknown keys {sorted(unknown)}; known: {sorted(EVALUATE_KEYS)}")
    return study


def budget_of(study: Mapping[str, Any], name: str) -> dict[str, Any]:
    budgets = study["budgets"]
    if name not in budgets:
        raise StudyError(f"budget {name!r} not in the study; it has {', '.join(budgets)}")
    budget = dict(budgets[name])
    keep = sorted(int(s) for s in budget.get("keep", [budget["steps"]]))
    if keep[-1] != int(budget["steps"]):
        keep.append(int(budget["steps"]))
    budget["keep"] = keep
    return budget


def run_config(study: Mapping[str, Any], data_dir: Path, budget: Mapping[str, Any]):
    """The pretraining RunConfig: the recipe, sources under ``data_dir``, the budget's steps and overrides."""
    from mae_domains.config import load_config

    recipe = json.loads(json.dumps(study["recipe"]))
    sources = [str(data_dir / s) for s in recipe.get("data", {}).get("sources", [])]
    for source in sources:
        if not Path(source).exists():
            raise StudyError(f"{source}: not found; prepare the data first ({study.get('prepare', 'see the README')})")
    recipe.setdefault("data", {})["sources"] = sources
    every = _gcd(budget["keep"])
    overrides = [f"engine.max_steps={int(budget['steps'])}", f"engine.checkpoint_every={every}",
                 *budget.get("overrides", [])]
    return load_config(None, overrides, base=recipe)


def _gcd(values: list[int]) -> int:
    from math import gcd
    out = 0
    for v in values:
        out = gcd(out, int(v))
    return out


def machine() -> dict[str, Any]:
    import torch

    import mae_domains
    info = {"host": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cpus_available": len(os.sched_getaffinity(0)),
            "torch": torch.__version__, "mae_domains": mae_domains.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    return info


def pretrain_stage(study: Mapping[str, Any], data_dir: Path, out: Path, budget: Mapping[str, Any]) -> dict[str, Any]:
    """Pretrain (or reuse a finished run) and keep the checkpoints of the budget's ``keep`` steps."""
    from mae_domains.config import dump_config
    from mae_domains.engine import pretrain

    run_dir = out / "pretrain"
    record_path = run_dir / "study.json"
    config = run_config(study, data_dir, budget)
    resolved = json.loads(json.dumps(config.to_dict(), default=str))
    if record_path.exists():  # reused only when the same config ran to the end with every kept checkpoint
        record = json.loads(record_path.read_text())
        if record.get("config") == resolved and all(Path(p).exists() for p in record["kept"].values()):
            log.info("pretraining already done: %s", run_dir)
            return record
    keep = set(budget["keep"])
    kept: dict[str, str] = {}
    losses: dict[str, float] = {}

    def on_step(step: int, row: Mapping[str, Any]) -> None:
        if "loss" in row:
            losses[str(step)] = float(row["loss"])
        if step in keep:  # the trainer wrote checkpoint.pt at this step just before calling us
            target = run_dir / "steps" / f"step{step:07d}"
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run_dir / "checkpoint.pt", target / "checkpoint.pt")
            for name in ("config.yaml", "stats.json"):
                if (run_dir / name).exists():
                    shutil.copyfile(run_dir / name, target / name)
            kept[str(step)] = str(target / "checkpoint.pt")
            log.info("kept the checkpoint of step %d", step)

    started = time.perf_counter()
    result = pretrain(config, run_dir, overwrite=True, on_step=on_step)
    if result.stopped_by:
        raise StudyError(f"pretraining stopped by {result.stopped_by} at step {result.steps}; run the study again")
    record = {"steps": int(budget["steps"]), "keep": sorted(keep), "kept": kept,
              "wall_s": round(time.perf_counter() - started, 1), "batch_size": config.engine.batch_size,
              "machine": machine(), "loss": losses, "config": resolved}
    dump_config(config, run_dir / "study_config.yaml")
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def benchmark_spec(study: Mapping[str, Any], data_dir: Path, pretrained: Mapping[str, Any]) -> dict[str, Any]:
    """The benchmark spec of the evaluate stage (see the module docstring)."""
    ev = study["evaluate"]
    steps = sorted(int(s) for s in pretrained["kept"])
    final = f"mae-step{steps[-1]}"
    checkpoints = [{"name": f"mae-step{s}", "path": pretrained["kept"][str(s)], "step": s} for s in steps]
    if ev.get("adapter_options"):  # reading options for the labelled files (e.g. one chip per file)
        for entry in checkpoints:
            saved = yaml.safe_load((Path(entry["path"]).parent / "config.yaml").read_text())
            saved.setdefault("data", {}).setdefault("options", {}).update(ev["adapter_options"])
            entry["config"] = saved
    checkpoints += [{"name": "random-init", "init": "random", "like": final, "seed": 0},
                    {"name": "raw-pixels", "init": "pixels", "like": final}]
    datasets, full, fractional, trained_sets, own_runs = [], [], [], [], []
    for entry in ev["datasets"]:
        if entry.get("bootstrap_groups"):  # read by the report only (resampling dependent test samples)
            _under(data_dir, entry["bootstrap_groups"])
        entry = {k: v for k, v in entry.items() if k != "bootstrap_groups"}
        if entry.get("protocols"):  # e.g. segmentation: its own protocols, all labels, final vs random init
            resolved = {k: (_under(data_dir, v) if k in ("train", "test", "manifest") else v)
                        for k, v in entry.items() if k != "protocols"}
            datasets.append(resolved)
            own_runs.append({"checkpoints": [final, "random-init"], "datasets": [entry["name"]],
                             "protocols": list(entry["protocols"])})
            continue
        for fraction in ev.get("label_fractions", [1.0]):
            name = entry["name"] if fraction == 1.0 else f"{entry['name']}@{fraction * 100:g}%"
            resolved = {k: (_under(data_dir, v) if k in ("train", "test", "manifest") else v) for k, v in entry.items()}
            datasets.append({**resolved, "name": name, **({} if fraction == 1.0 else {"train_fraction": fraction})})
            (full if fraction == 1.0 else fractional).append(name)
            if fraction in ev.get("trained_fractions", ev.get("label_fractions", [1.0])):
                trained_sets.append(name)
    names = {p["name"] for p in ev["protocols"]}
    for group, listed in [("frozen", ev.get("frozen", [])), ("trained", ev.get("trained", [])),
                          *((f"datasets[{r['datasets'][0]}].protocols", r["protocols"]) for r in own_runs)]:
        unknown = set(listed) - names
        if unknown:
            raise StudyError(f"evaluate.{group}: {sorted(unknown)} not among evaluate.protocols")
    runs = []
    if ev.get("frozen"):
        runs.append({"checkpoints": [c["name"] for c in checkpoints], "datasets": full, "protocols": ev["frozen"]})
        if fractional:
            runs.append({"checkpoints": [final, "random-init", "raw-pixels"], "datasets": fractional,
                         "protocols": ev["frozen"]})
    if ev.get("trained"):
        runs.append({"checkpoints": [final, "random-init"], "datasets": trained_sets, "protocols": ev["trained"]})
    runs += own_runs
    return {"name": study.get("title", study["field"]), "seeds": ev.get("seeds", [0, 1, 2]), "device": "auto",
            "batch_size": ev.get("batch_size", 64), "num_workers": ev.get("num_workers", 0), "cache": True,
            "progress": False, "checkpoints": checkpoints, "datasets": datasets, "protocols": ev["protocols"],
            "runs": runs}


def _under(root: Path, value: Any) -> Any:
    if isinstance(value, list):
        return [_under(root, v) for v in value]
    path = root / str(value)
    if not path.exists():
        raise StudyError(f"{path}: not found; prepare the data first")
    return str(path)


def evaluate_stage(study: Mapping[str, Any], data_dir: Path, out: Path, pretrained: Mapping[str, Any]) -> Path:
    from mae_domains.evaluation import run_benchmark

    spec = benchmark_spec(study, data_dir, pretrained)
    threads = (pretrained.get("config") or {}).get("engine", {}).get("threads")
    if threads:  # the budget's CPU threads apply to evaluation too (2 spinning threads on 2 busy cores: 7x slower)
        import torch

        torch.set_num_threads(int(threads))
    eval_dir = out / "eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    (eval_dir / "benchmark.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    started = time.perf_counter()
    run_benchmark(spec, eval_dir, root=data_dir)
    (eval_dir / "wall.json").write_text(json.dumps({"wall_s": round(time.perf_counter() - started, 1)}) + "\n")
    return eval_dir / "results.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", help="a study file, e.g. benchmarks/real/remote_sensing.yaml")
    parser.add_argument("--budget", default="cpu", help="a budget of the study file (cpu, gpu)")
    parser.add_argument("--data-root", type=Path, default=Path("data/real"),
                        help="the folder the preparation scripts wrote into")
    parser.add_argument("--out", type=Path, help="default: runs/real/<field>-<budget>")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of " + ", ".join(STAGES))
    parser.add_argument("--report-to", type=Path, help="also copy results.md and its plots into this folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        study = load_study(args.study)
        budget = budget_of(study, args.budget)
        stages = [s.strip() for s in args.stages.split(",") if s.strip()]
        if set(stages) - set(STAGES):
            raise StudyError(f"--stages: unknown {sorted(set(stages) - set(STAGES))}; use {', '.join(STAGES)}")
        data_dir = args.data_root / study["data"]
        if not data_dir.is_dir():
            raise StudyError(f"{data_dir}: not found; prepare it with: {study.get('prepare', 'the preparation script')}")
        out = args.out or Path("runs/real") / f"{study['field']}-{args.budget}"
        pretrained = pretrain_stage(study, data_dir, out, budget) if "pretrain" in stages else \
            json.loads((out / "pretrain" / "study.json").read_text())
        if "evaluate" in stages:
            evaluate_stage(study, data_dir, out, pretrained)
        if "report" in stages:
            command = f"python benchmarks/real/study.py {args.study} --budget {args.budget}" + (
                f" --data-root {args.data_root}" if args.data_root != Path("data/real") else "")
            path = write_results(study, args.budget, out, pretrained, command=command, data_dir=data_dir)
            if args.report_to:
                args.report_to.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, args.report_to / f"{study['field']}.md")
                for plot in (out / "plots").glob("*.png"):
                    shutil.copyfile(plot, args.report_to / plot.name)
            print(path)
    except (StudyError, FileNotFoundError, ValueError) as err:  # ValueError: a bad entry of the study file
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
