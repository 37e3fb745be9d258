"""torchrun helpers: process group from the environment, reductions that also work unsharded, and
FSDP2 sharding with full (unsharded) resume state."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
import torch.distributed as dist

from mae_domains.engine.errors import TrainingStopped

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_preference: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` describes (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_preference != "cpu"
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local_rank)


def all_reduce_sum(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def all_gather_objects(obj, info: DistInfo) -> list:
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def run_on_main(fn: Callable[[], T], info: DistInfo) -> T | None:
    """``fn()`` on rank 0 only (None elsewhere). An exception there is raised on every rank (as
    :class:`TrainingStopped` on the others), so no rank waits forever for one that gave up."""
    result, error = None, None
    if info.is_main:
        try:
            result = fn()
        except Exception as err:  # re-raised below, after the other ranks heard of it
            error = err
    if info.enabled:
        failure = all_gather_objects(None if error is None else f"{type(error).__name__}: {error}", info)[0]
        if error is None and failure is not None:
            raise TrainingStopped(f"rank 0 stopped the run: {failure}")
    if error is not None:
        raise error
    return result


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


# ----- FSDP2: sharded parameters, gradients and optimizer state (ViT-L/H) --------------------------


def shard_model(model: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    """FSDP2 (``fully_shard``) over the ranks: one unit per encoder block, then the root for the rest
    (embedding, decoder, head). Decoder blocks stay in the root unit: some are evaluated through their
    weights rather than their ``forward`` (the last self-attention block, at the queried rows only), and
    the decoder is small. Parameter names are unchanged; each rank keeps 1/world of every tensor."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from mae_domains.engine.activation_checkpointing import transformer_blocks

    mesh = init_device_mesh(device.type, (info.world_size,))
    blocks = [module for name, module in transformer_blocks(model) if "decoder" not in name.split(".")]
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def gradient_sync(model: torch.nn.Module, sync: bool):
    """Context of one micro-batch's backward: gradients are reduced across ranks only when ``sync``
    (the last micro-batch of an accumulation); DDP, FSDP2 and an unwrapped model alike."""
    import contextlib

    from torch.nn.parallel import DistributedDataParallel

    if isinstance(model, DistributedDataParallel):
        return contextlib.nullcontext() if sync else model.no_sync()
    if is_sharded(model):
        model.set_requires_gradient_sync(sync)  # type: ignore[operator]
    return contextlib.nullcontext()


def total_grad_norm(parameters) -> torch.Tensor:
    """The 2-norm of all gradients, over every rank's shards under FSDP2 (a plain tensor)."""
    from torch.distributed.tensor import DTensor

    norm = torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None])
    return norm.full_tensor() if isinstance(norm, DTensor) else norm


def full_state_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def optimizer_param_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Parameter names in the optimizer's own order (the integer ids of ``optimizer.state_dict()``)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def gather_full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Unsharded model and optimizer state dicts (on the CPU) of an FSDP2 model, in the layout of an
    unsharded run's ``model.state_dict()`` / ``optimizer.state_dict()`` (integer parameter ids), so a
    checkpoint resumes under DDP, FSDP2 or one process alike. Collective: every rank calls it; only rank
    0 receives the tensors (the others get empty dicts)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    model_state = get_model_state_dict(model, options=full_state_options())
    named = get_optimizer_state_dict(model, optimizer, options=full_state_options())
    if not named.get("state") and not named.get("param_groups"):
        return model_state, {}
    ids = {name: i for i, name in enumerate(optimizer_param_names(model, optimizer))}
    return model_state, {
        "state": {ids[name]: value for name, value in named["state"].items()},
        "param_groups": [{**group, "params": [ids[name] for name in group["params"]]} for group in named["param_groups"]],
    }


def load_full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, model_state: dict,
                    optimizer_state: dict) -> None:
    """Load unsharded state dicts (as :func:`gather_full_state` writes them) into an FSDP2 model and its
    optimizer; every rank passes the full dicts and keeps its own shard."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, strict=True)
    set_model_state_dict(model, model_state, options=options)
    names = optimizer_param_names(model, optimizer)
    saved_count = sum(len(g["params"]) for g in optimizer_state.get("param_groups", []))
    if len(names) != saved_count:
        raise ValueError(f"the optimizer state holds {saved_count} parameters, the model trains {len(names)}")
    named = {
        "state": {names[i]: value for i, value in optimizer_state["state"].items()},
        "param_groups": [{**group, "params": [names[i] for i in group["params"]]} for group in optimizer_state["param_groups"]],
    }
    set_optimizer_state_dict(model, optimizer, named, options=options)
    for group, saved in zip(optimizer.param_groups, optimizer_state["param_groups"]):
        # the loader turns tuples (AdamW's betas) into lists: keep the saved types, as load_state_dict does
        group.update({k: v for k, v in saved.items() if k != "params" and isinstance(v, tuple)})
