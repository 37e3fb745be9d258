"""Per-adapter protocol defaults: protocol defaults < the adapter's ``protocol_defaults`` < the caller's settings,
and fine-tuning's loader is built for the resolved settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from torch import nn

from mae_domains.evaluation.loading import DownstreamData, LoadedCheckpoint
from mae_domains.evaluation.runner import run_benchmark
from mae_domains.protocols import EvaluationProtocol, ProtocolContext, ProtocolResult, register_protocol, unregister_protocol


class EchoProtocol(EvaluationProtocol):
    """Reports its resolved settings and which training loader it got."""

    name = "echo_settings"
    trains_encoder = True
    seen: ClassVar[list[ProtocolContext]] = []

    def defaults(self) -> dict[str, Any]:
        return {"alpha": 1.0, "beta": 1.0, "gamma": 1.0}

    def run(self, context: ProtocolContext) -> ProtocolResult:
        EchoProtocol.seen.append(context)
        s = context.settings
        return ProtocolResult(summary={"alpha": s["alpha"], "beta": s["beta"], "gamma": s["gamma"]})


class FakeAdapter:
    name = "fake.kind"
    protocol_defaults = {"echo_settings": {"alpha": 2.0, "beta": 2.0}}


@pytest.fixture
def echo():
    EchoProtocol.seen.clear()
    register_protocol(EchoProtocol())
    yield
    unregister_protocol("echo_settings")


def _run(tmp_path: Path, adapter: Any, entry: dict[str, Any]) -> dict[str, float]:
    built: list[dict] = []

    def load(spec, root, loaded):
        return LoadedCheckpoint("ckpt", "ckpt:0", adapter_name="fake.kind", adapter=adapter, model=nn.Linear(2, 2))

    def loaders(spec, checkpoint, options, root):
        def finetune_loader(settings):
            built.append(dict(settings))
            return ["augmented for", settings["alpha"]]
        return DownstreamData(train=["train"], test=["test"], class_names=["a", "b"], dataset_id="d:0",
                              train_augmented=["plain augmented"], finetune_loader=finetune_loader)

    spec = {"checkpoints": [{"name": "ckpt"}], "datasets": [{"name": "d"}], "protocols": [entry]}
    records = run_benchmark(spec, tmp_path / "out", build_loaders=loaders, load_checkpoint_fn=load, plots=False)
    assert built and built[-1]["alpha"] == records[0].settings["alpha"]
    assert EchoProtocol.seen[-1].train_augmented == ["augmented for", built[-1]["alpha"]]
    return {r.metric: r.value for r in records}


def test_adapter_defaults_sit_between_the_protocols_and_the_callers(echo, tmp_path):
    values = _run(tmp_path, FakeAdapter(), {"name": "echo_settings", "beta": 3.0})
    assert values == {"alpha": 2.0, "beta": 3.0, "gamma": 1.0}

    class NoDefaults:
        name = "plain.kind"

    assert _run(tmp_path, NoDefaults(), {"name": "echo_settings"}) == {"alpha": 1.0, "beta": 1.0, "gamma": 1.0}


def test_an_unknown_key_in_the_adapters_defaults_is_an_error(echo, tmp_path):
    class Misspelled(FakeAdapter):
        protocol_defaults = {"echo_settings": {"alpah": 2.0}}

    with pytest.raises(ValueError, match="'alpah' in the adapter's protocol_defaults.*'alpha'"):
        _run(tmp_path, Misspelled(), {"name": "echo_settings"})


def test_the_adapter_api_reads_protocol_defaults():
    from mae_domains.registry import get_adapter

    image = get_adapter("image")
    assert image.protocol_settings("finetune") == {}
    xray = get_adapter("medical.xray")
    assert xray.protocol_settings("finetune") == {"layer_decay": 0.55, "drop_path": 0.2,
                                                  "randaugment_magnitude": 6, "pool": "avg"}
