"""Prepared, sharded archives: decode once (``mae-domains prepare``), train, embed and evaluate many times
from MosaicML Streaming MDS shards on local disk or object storage."""

from mae_domains.shards.archive import (
    PreparedArchive, PreparedReader, ShardRef, is_prepared, open_archive, prepared_reader, shard_groups,
)
from mae_domains.shards.prepare import PrepareSummary, prepare_archive

__all__ = ["PrepareSummary", "PreparedArchive", "PreparedReader", "ShardRef", "is_prepared", "open_archive",
           "prepare_archive", "prepared_reader", "shard_groups"]
