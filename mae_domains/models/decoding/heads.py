"""Prediction heads on decoder features: one linear head for every token, one head per index along an
axis (e.g. per band group, since groups hold different bands), and a dense head that returns images."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from mae_domains.grid import GridLayout


class LinearHead(nn.Module):
    """``(B, Q, Dd)`` -> ``(B, Q, P)`` with one shared linear layer."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.pred = nn.Linear(in_dim, out_dim)
        nn.init.xavier_uniform_(self.pred.weight)
        nn.init.zeros_(self.pred.bias)

    def forward(self, features: torch.Tensor, query_ids: torch.Tensor, layout: GridLayout) -> torch.Tensor:
        return self.pred(features)


class RoutedHead(nn.Module):
    """One linear layer per index along ``axis``; each query goes through the head of its index.

    Each head's output is that index's own target layout (a band group's bands in group order), so
    predictions and targets are aligned by construction whatever order the tokens come in.
    """

    def __init__(self, in_dim: int, out_dim: int, axis: str, num_routes: int) -> None:
        super().__init__()
        self.axis = axis
        self.heads = nn.ModuleList(nn.Linear(in_dim, out_dim) for _ in range(num_routes))
        for head in self.heads:
            nn.init.xavier_uniform_(head.weight)
            nn.init.zeros_(head.bias)

    def routes(self, query_ids: torch.Tensor, layout: GridLayout) -> torch.Tensor:
        """Index along ``axis`` of every query ``(B, Q)``."""
        return layout.coordinates(self.axis, device=query_ids.device)[query_ids]

    def forward(self, features: torch.Tensor, query_ids: torch.Tensor, layout: GridLayout) -> torch.Tensor:
        route = self.routes(query_ids, layout).unsqueeze(-1)
        if int(layout.axis(self.axis).size) != len(self.heads):
            raise ValueError(f"{len(self.heads)} heads for axis {self.axis!r} of size {layout.axis(self.axis).size}")
        out = None
        for index, head in enumerate(self.heads):  # a few heads: masked sum, no data-dependent shapes
            part = torch.where(route == index, head(features), 0.0)
            out = part if out is None else out + part
        return out


class DensePixelHead(nn.Module):
    """Dense grid features ``(B, N, Dd)`` -> an image, through a per-token linear layer and the
    embedding's ``unpatchify`` (the dense counterpart of the per-token heads)."""

    def __init__(self, in_dim: int, out_dim: int, unpatchify: Callable[[torch.Tensor, GridLayout], torch.Tensor]) -> None:
        super().__init__()
        self.pred = LinearHead(in_dim, out_dim)
        self.unpatchify = unpatchify

    def forward(self, features: torch.Tensor, layout: GridLayout) -> torch.Tensor:
        if features.shape[1] != layout.num_tokens:
            raise ValueError(f"dense head needs all {layout.num_tokens} tokens, got {features.shape[1]}")
        ids = torch.arange(layout.num_tokens, device=features.device).expand(features.shape[0], -1)
        return self.unpatchify(self.pred(features, ids, layout), layout)
