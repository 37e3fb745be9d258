"""Token grids: named axes, per-token codes, gather/scatter/pooling over axes."""

from mae_domains.grid.axes import (
    Axis, AxisKind, GridLayout, continuous_axis, nominal_axis, ordinal_axis, spatial_axis,
)
from mae_domains.grid.codes import (
    NameVocabulary, NamedCodeTable, add_codes, concat_codes, expand_along_axis, fraction_width, index_codes,
    sincos_positions, spatial_codes, split_width, value_codes,
)
from mae_domains.grid.batch import GridBatch, as_grid_batch, pixel_weights
from mae_domains.grid.token_grid import TokenGrid, gather_tokens, scatter_tokens

__all__ = [
    "Axis", "AxisKind", "GridLayout", "continuous_axis", "nominal_axis", "ordinal_axis", "spatial_axis",
    "NameVocabulary", "NamedCodeTable", "add_codes", "concat_codes", "expand_along_axis", "fraction_width",
    "index_codes", "sincos_positions", "spatial_codes", "split_width", "value_codes",
    "TokenGrid", "gather_tokens", "scatter_tokens", "GridBatch", "as_grid_batch", "pixel_weights",
]
