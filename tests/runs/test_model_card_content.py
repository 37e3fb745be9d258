"""A model card a reader can use: titled with the run's name (not the export folder), no paths of the
training machine, channel names the adapter knows, the value range the model expects, intended use,
limitations and how to cite the method papers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mae_domains.config import dump_config
from mae_domains.registry import get_adapter
from mae_domains.runs import export_run
from mae_domains.testing.conformance import Context


def write_run(adapter: str, run_dir: Path, sources: list[str]) -> None:
    ctx = Context(get_adapter(adapter))
    ctx.config.data.sources = sources
    run_dir.mkdir(parents=True)
    torch.save({"model": ctx.model().state_dict(), "config": ctx.config.to_dict(), "stats": ctx.stats.as_dict(),
                "adapter": adapter, "step": 3}, run_dir / "checkpoint.pt")
    dump_config(ctx.config, run_dir / "config.yaml")


@pytest.mark.parametrize("layout,card_name", [("hf", "README.md"), ("mae-domains", "MODEL_CARD.md")])
def test_card_is_titled_by_the_run_and_holds_no_training_paths(layout, card_name, tmp_path):
    private = tmp_path / "home" / "alice" / "chest_xrays_2024"
    write_run("medical.xray", tmp_path / "xray-vits-800ep", [str(private)])
    export_run(tmp_path / "xray-vits-800ep", tmp_path / "hub", layout=layout)
    card = (tmp_path / "hub" / card_name).read_text()
    body = card.split("---\n", 2)[-1] if layout == "hf" else card
    assert body.startswith("# xray-vits-800ep\n")
    assert str(tmp_path) not in card and "alice/" not in card
    assert "1 location(s): chest_xrays_2024" in card
    assert "| 0 | gray |" in card
    assert "Values before normalization: 0-1: the image as a viewer displays it" in card
    assert "## Intended use" in card and "## Limitations" in card and "Not a medical device" in card
    cite = card.split("## How to cite", 1)[1]
    assert "Masked Autoencoders Are Scalable Vision Learners" in cite
    assert "Delving into Masked Autoencoders for Multi-Label Thorax Disease Classification" in cite


def test_rgb_channels_are_named_and_each_adapter_cites_its_method(tmp_path):
    write_run("image", tmp_path / "photos", [])
    export_run(tmp_path / "photos", tmp_path / "export")
    card = (tmp_path / "export" / "MODEL_CARD.md").read_text()
    assert "| 0 | red |" in card and "| 2 | blue |" in card and "Not a medical device" not in card
    for adapter, paper in (("remote_sensing.scale", "Scale-MAE: A Scale-Aware Masked Autoencoder"),
                           ("microscopy.channel_agnostic", "Masked Autoencoders for Microscopy are Scalable")):
        write_run(adapter, tmp_path / adapter, [])
        export_run(tmp_path / adapter, tmp_path / f"{adapter}-export")
        assert paper in (tmp_path / f"{adapter}-export" / "MODEL_CARD.md").read_text()
