"""TokenGrid gather/scatter/pooling without loops."""

import torch

from mae_domains.grid import GridLayout, TokenGrid, gather_tokens, nominal_axis, scatter_tokens, spatial_axis


def make_grid(valid=None):
    layout = GridLayout((nominal_axis("channel", ["a", "b", "c"]), spatial_axis("y", 2), spatial_axis("x", 2)))
    tokens = torch.randn(2, 12, 8)
    return TokenGrid(tokens=tokens, layout=layout, valid=valid)


def test_gather_then_scatter_round_trip():
    grid = make_grid()
    ids = torch.stack([torch.randperm(12)[:5] for _ in range(2)])
    sub = grid.gather(ids)
    assert sub.tokens.shape == (2, 5, 8) and not sub.is_full
    for b in range(2):
        assert torch.equal(sub.tokens[b], grid.tokens[b, ids[b]])
    full = sub.scatter(torch.zeros(8))
    kept = torch.zeros(2, 12, dtype=torch.bool).scatter(1, ids, True)
    assert torch.equal(full.tokens[kept], grid.tokens[kept])
    assert (full.tokens[~kept] == 0).all()


def test_scatter_is_differentiable():
    values = torch.randn(1, 2, 4, requires_grad=True)
    base = torch.zeros(1, 5, 4, requires_grad=True)
    out = scatter_tokens(values, torch.tensor([[3, 0]]), base)
    out.sum().backward()
    assert values.grad.eq(1).all() and base.grad[0, [1, 2, 4]].eq(1).all() and base.grad[0, [0, 3]].eq(0).all()
    assert torch.equal(gather_tokens(out, torch.tensor([[3, 0]])), values)


def test_pool_over_named_axes():
    grid = make_grid()
    per_position = grid.pool(["channel"])
    assert per_position.layout.names == ("y", "x")
    assert torch.allclose(per_position.tokens, grid.tokens.reshape(2, 3, 4, 8).mean(1))
    per_channel = grid.pool(["y", "x"])
    assert per_channel.layout.names == ("channel",)
    assert torch.allclose(per_channel.tokens, grid.tokens.reshape(2, 3, 4, 8).mean(2))
    whole = grid.pool(grid.layout.names)
    assert whole.tokens.shape == (2, 1, 8)


def test_pool_mean_ignores_invalid_tokens():
    valid = torch.ones(2, 12, dtype=torch.bool)
    valid[:, 0] = False  # channel a, position (0, 0)
    grid = make_grid(valid)
    pooled = grid.pool(["channel"])
    expected = grid.tokens.reshape(2, 3, 4, 8)[:, 1:, 0].mean(1)
    assert torch.allclose(pooled.tokens[:, 0], expected, atol=1e-6)


def test_sequence_with_prefix():
    grid = make_grid().with_prefix(torch.zeros(1, 1, 8))
    seq = grid.sequence()
    assert seq.shape == (2, 13, 8) and grid.num_prefix_tokens == 1
    back = grid.replace_sequence(seq + 1)
    assert back.tokens.shape == (2, 12, 8) and back.prefix.shape == (2, 1, 8)
