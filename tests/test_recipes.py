"""Every recipe in configs/ names its paper and what differs from it, and states the schedule it sets.

The header, at the top of each file:

    # Paper: <authors, title, year, reference code repository>   (or "none (<why>)" for demos and smoke runs)
    # Differs from the paper: <each setting that differs, with the reason; or "nothing">
    # Schedule: <E> epochs, <W> warmup epochs, blr <x> (or lr <x>), batch <N> ...   (paper recipes)

The numbers of the Schedule line must be the file's own values: ``engine.epochs``, ``optim.warmup_epochs``,
``optim.base_lr`` (with ``optim.lr`` unset) or the absolute ``optim.lr``, and ``engine.batch_size x
optim.accum_steps`` (the effective batch on one device).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mae_domains.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
NUMBER = r"([0-9][0-9.eE+-]*)"


def header(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line for line in lines[: next(i for i, l in enumerate(lines) if not l.startswith("#"))]]


def schedule_values(line: str) -> dict[str, float]:
    """The numbers a Schedule line states."""
    found: dict[str, float] = {}
    patterns = {"epochs": r"(?<!warmup )\b(\d+) epochs", "warmup_epochs": r"(\d+(?:\.\d+)?) warmup epochs",
                "blr": rf"\bblr {NUMBER}", "lr": rf"(?<![\w.])lr {NUMBER}", "batch": r"\bbatch (\d+)"}
    for key, pattern in patterns.items():
        match = re.search(pattern, line)
        if match:
            found[key] = float(match.group(1).rstrip(".,"))
    return found


def test_there_are_recipes():
    assert len(CONFIGS) >= 8


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_recipe_names_its_paper_and_states_its_schedule(path):
    lines = header(path)
    assert len(lines) >= 2, f"{path.name}: no header"
    assert lines[0].startswith("# Paper: ") and len(lines[0]) > len("# Paper: ") + 3, f"{path.name}: first line"
    assert lines[1].startswith("# Differs from the paper: ") and len(lines[1]) > 30, f"{path.name}: second line"
    config = load_config(path)  # parses with the project's loader
    if lines[0].startswith("# Paper: none"):
        assert re.match(r"# Paper: none \(.+\)", lines[0]), f"{path.name}: say why there is no paper"
        return
    schedule = [line for line in lines if line.startswith("# Schedule: ")]
    assert len(schedule) == 1, f"{path.name}: a paper recipe states its schedule in one '# Schedule:' line"
    stated = schedule_values(schedule[0])
    assert {"epochs", "batch"} <= stated.keys() and ({"blr", "lr"} & stated.keys()), (path.name, stated)
    assert config.engine.epochs == stated["epochs"], path.name
    assert config.engine.max_steps is None, f"{path.name}: a paper schedule is in epochs"
    assert config.optim.warmup_steps is None and config.optim.warmup_epochs == stated.get("warmup_epochs", None), path.name
    if "blr" in stated:
        assert config.optim.lr is None and config.optim.base_lr == pytest.approx(stated["blr"]), path.name
    else:
        assert config.optim.lr == pytest.approx(stated["lr"]), path.name
    assert config.engine.batch_size * config.optim.accum_steps == stated["batch"], path.name


def test_schedule_line_parsing():
    line = "# Schedule: 800 epochs, 40 warmup epochs, blr 1.5e-4, batch 4096 = 256 x 16 accumulation steps"
    assert schedule_values(line) == {"epochs": 800, "warmup_epochs": 40, "blr": 1.5e-4, "batch": 4096}
    assert schedule_values("# Schedule: 10 epochs, 1 warmup epochs, lr 2e-3, batch 8") == {
        "epochs": 10, "warmup_epochs": 1, "lr": 2e-3, "batch": 8}


def test_maes_vit_base_recipe_is_the_papers():
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "image_vit_base.yaml")
    assert (config.engine.epochs, config.optim.warmup_epochs, config.optim.base_lr) == (800, 40, 1.5e-4)
    assert config.engine.batch_size * config.optim.accum_steps == 4096
    tune = config.eval.finetune
    assert (tune.epochs, tune.layer_decay, tune.drop_path, tune.label_smoothing) == (100, 0.65, 0.1, 0.1)
    assert (tune.mixup, tune.cutmix, tune.erase_prob, tune.erase_mode) == (0.8, 1.0, 0.25, "pixel")
    assert tune.auto_augment == "rand-m9-mstd0.5-inc1" and tune.position_table == "trained" and tune.fc_norm
