"""Peak host memory of reading a NIfTI volume, in bytes per voxel, each measurement in a fresh process.

Rows: nibabel's ``get_fdata(dtype=float32)`` (the stored array and the float32 copy side by side, the
baseline), ``mae_medical.nifti.read_nifti`` (one float32 copy, decoded slab by slab) and the CT/MR
adapter's full read (decode, RAS reorientation, resampling to 1.5 x 1.5 x 2 mm, intensity window, cache
off). Peak = ``ru_maxrss`` after the read minus ``ru_maxrss`` before it (modules already imported).
Multiply by ``data.max_pixels`` for the worst case of a run's loader process.

    python benchmarks/bench_nifti_memory.py --size 384
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

MEASURE = """
import resource, sys
import nibabel as nib, numpy as np
from mae_medical.nifti import read_nifti
from mae_domains.registry import get_adapter
adapter = get_adapter("medical.ct", {"cache_dir": None})
kind, path = sys.argv[1], sys.argv[2]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if kind == "get_fdata":
    n = nib.load(path).get_fdata(dtype=np.float32).size
elif kind == "read_nifti":
    n = read_nifti(path).data.size
else:
    n = int(np.prod(nib.load(path).shape))
    adapter.read(adapter.discover([path])[0])
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 / n)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=384, help="edge of the int16 test volume (voxels)")
    args = parser.parse_args()
    import nibabel as nib
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "volume.nii.gz"
        values = np.random.default_rng(0).integers(-1000, 1000, (args.size,) * 3) // 100 * 100
        nib.save(nib.Nifti1Image(values.astype(np.int16), np.diag([0.8, 0.8, 1.0, 1.0])), path)
        print(f"int16 volume {args.size}^3 ({path.stat().st_size / 2**20:.0f} MiB gzip)")
        results = {}
        for kind in ("get_fdata", "read_nifti", "ct_adapter_read"):
            out = subprocess.run([sys.executable, "-c", MEASURE, kind, str(path)], capture_output=True, text=True,
                                 check=True)
            results[kind] = float(out.stdout.strip().splitlines()[-1])
            print(f"{kind:>16}: {results[kind]:5.1f} bytes per voxel peak")
        print(f"read_nifti / get_fdata: {results['read_nifti'] / results['get_fdata']:.2f}")


if __name__ == "__main__":
    main()
