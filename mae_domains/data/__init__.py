"""Samples, seeded sampling, skip-and-replace datasets and collation."""

from mae_domains.data.sample import BadSampleError, NormStats, Sample
from mae_domains.data.seeding import derive_seed

__all__ = ["BadSampleError", "NormStats", "Sample", "derive_seed"]
