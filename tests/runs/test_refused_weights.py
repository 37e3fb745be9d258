"""Weights that would poison a model are refused on load, in one line naming the file (and the tensor),
exit code 2 through the CLI: NaN/Inf in a checkpoint, an export or foreign weights, a checkpoint whose
weights do not fit its config, a plain state dict given as a run, a corrupt safetensors file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mae_domains.cli import main
from mae_domains.engine import pretrain
from mae_domains.runs import build_model, export_run, load_model
from mae_domains.weights import CheckpointFormatError
from tests.engine.conftest import make_config, write_pngs

RUN = ("engine.batch_size=4", "engine.max_steps=1", "data.num_workers=0")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("weights")
    write_pngs(root / "archive", 8)
    pretrain(make_config(root / "archive", *RUN), root / "run")
    export_run(root / "run", root / "export")
    return root


def copy(saved: Path, name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved / name, tmp_path / name))


def one_line_error(argv: list[str], capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


def poison_checkpoint(run: Path, key_part: str = "blocks.0") -> str:
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    key = next(k for k in state["model"] if key_part in k and state["model"][k].is_floating_point())
    state["model"][key][0] = float("nan")
    torch.save(state, run / "checkpoint.pt")
    return key


def test_nan_in_a_run_checkpoint_is_refused_by_every_command(saved, tmp_path, capsys):
    run = copy(saved, "run", tmp_path)
    key = poison_checkpoint(run)
    for argv in (["export", "--run", str(run), "--out", str(tmp_path / "out")],
                 ["embed", "--run", str(run), "--data", str(saved / "archive"), "--out", str(tmp_path / "e.npz")],
                 ["reconstruct", "--run", str(run)],
                 ["pretrain", "--resume", str(run), "engine.max_steps=2"]):
        err = one_line_error(argv, capsys)
        assert f"{run / 'checkpoint.pt'}: refused to load" in err and key in err and "NaN/Inf" in err, argv
    assert not (tmp_path / "out").exists()


def test_inf_in_an_export_and_in_foreign_weights_is_refused(saved, tmp_path, capsys):
    export = copy(saved, "export", tmp_path)
    tensors = load_file(export / "encoder.safetensors")
    key = sorted(tensors)[-1]
    tensors[key] = tensors[key].clone().fill_(float("inf"))
    save_file(tensors, export / "encoder.safetensors")
    err = one_line_error(["embed", "--run", str(export), "--data", str(saved / "archive"),
                          "--out", str(tmp_path / "e.npz")], capsys)
    assert f"{export / 'encoder.safetensors'}: refused to load" in err and key in err
    foreign = tmp_path / "mae_pretrain.pth"
    torch.save({"model": tensors}, foreign)
    config = make_config(saved / "archive", *RUN)
    with pytest.raises(CheckpointFormatError, match=f"{foreign}: refused to load: .*{key}"):
        load_model(foreign, config=config)


def test_checkpoint_of_another_preset_is_one_line(saved, tmp_path, capsys):
    """The checkpoint's config says micro, its weights are another model's."""
    run = copy(saved, "run", tmp_path)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    other = make_config(saved / "archive", "model.decoder_embed_dim=48")
    state["model"] = build_model(other)[1].state_dict()
    torch.save(state, run / "checkpoint.pt")
    err = one_line_error(["embed", "--run", str(run), "--data", str(saved / "archive"), "--out", str(tmp_path / "e.npz")],
                         capsys)
    assert f"{run / 'checkpoint.pt'}: the weights do not fit the model of its config (size mismatch for" in err
    err = one_line_error(["pretrain", "--resume", str(run)], capsys)
    assert f"{run / 'checkpoint.pt'}: the checkpoint does not fit the model" in err


def test_plain_state_dict_as_a_run_checkpoint(saved, tmp_path, capsys):
    run = copy(saved, "run", tmp_path)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    torch.save(state["model"], run / "checkpoint.pt")
    err = one_line_error(["pretrain", "--resume", str(run)], capsys)
    assert f"{run / 'checkpoint.pt'}: not a run checkpoint of mae-domains" in err
    with pytest.raises(CheckpointFormatError, match=r"not a run checkpoint of mae-domains \(a plain state dict\)"):
        pretrain(make_config(saved / "archive", *RUN), run, resume=True)


def test_corrupt_safetensors_is_one_line(saved, tmp_path, capsys):
    export = copy(saved, "export", tmp_path)
    data = (export / "encoder.safetensors").read_bytes()
    (export / "encoder.safetensors").write_bytes(data[:8] + b"{not json" + data[40:200])
    err = one_line_error(["export", "--run", str(export), "--out", str(tmp_path / "again")], capsys)
    assert f"{export / 'encoder.safetensors'}: not a readable safetensors file" in err


def test_export_metadata_config_that_is_a_string_names_the_file_and_field(saved, tmp_path, capsys):
    export = copy(saved, "export", tmp_path)
    weights = export / "encoder.safetensors"
    save_file(load_file(weights), weights, metadata={"config": "micro vit, patch 8", "format": "timm"})
    err = one_line_error(["embed", "--run", str(export), "--data", str(saved / "archive"),
                          "--out", str(tmp_path / "e.npz")], capsys)
    assert f"{weights}: metadata field 'config' is str 'micro vit, patch 8', expected a JSON object" in err
