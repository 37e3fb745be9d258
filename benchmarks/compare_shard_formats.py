"""How the format of `mae-domains prepare` was chosen: MosaicML Streaming (MDS), LitData and WebDataset on
the same samples (a 3 x 224 x 224 uint16 image, a bool validity mask, JSON metadata), zstd where the format
compresses: write time, shard bytes, bytes on disk after reading, and single-process reads in the random
order the engine's seeded sampler asks for (WebDataset: sequential, it has no random access).

Needs the two formats that are not dependencies: ``pip install litdata webdataset``.

    python benchmarks/compare_shard_formats.py 400
"""
import json, os, shutil, sys, tempfile, time, glob
import numpy as np


def sample(i):
    rng = np.random.default_rng(i)
    img = np.round(rng.normal(2000, 300, (3, 224, 224))).astype(np.uint16)
    valid = np.ones((224, 224), bool); valid[:10] = False
    meta = {"source": f"/data/x{i}.dcm", "sample_id": f"x{i}", "spacing": [0.1, 0.1], "channel_names": ["a", "b", "c"]}
    return img, valid, meta


def lit_item(i):
    img, valid, meta = sample(i)
    return {"image": img, "valid": valid, "meta": json.dumps(meta)}


def size(p):
    return sum(os.path.getsize(f) for f in glob.glob(p + "/**", recursive=True) if os.path.isfile(f))


def main():
    N = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    samples = [sample(i) for i in range(N)]
    raw_bytes = sum(s[0].nbytes + s[1].nbytes for s in samples)
    root = tempfile.mkdtemp()
    order = np.random.default_rng(1).permutation(N)
    res = {}
    from streaming import MDSWriter, StreamingDataset
    out = f"{root}/mds"; t = time.perf_counter()
    with MDSWriter(out=out, columns={"image": "ndarray", "valid": "ndarray", "meta": "json"}, compression="zstd",
                   size_limit="64mb") as w:
        for img, valid, meta in samples:
            w.write({"image": img, "valid": valid.view(np.uint8), "meta": meta})
    tw = time.perf_counter() - t
    zbytes = size(out)
    ds = StreamingDataset(local=out, batch_size=8); t = time.perf_counter()
    for i in order:
        x = ds[int(i)]; assert x["image"].dtype == np.uint16
    tr = time.perf_counter() - t
    t = time.perf_counter()
    for i in order:
        x = ds[int(i)]
    tr2 = time.perf_counter() - t
    sd = ds.state_dict(5, False)
    res["mds"] = dict(write_s=round(tw, 2), shard_bytes=zbytes, bytes_after_read=size(out), first_random_read_per_s=round(N / tr),
                      warm_random_read_per_s=round(N / tr2), state_dict=sorted(sd))
    import litdata as ld
    out = f"{root}/lit"; t = time.perf_counter()
    ld.optimize(fn=lit_item, inputs=list(range(N)), output_dir=out, chunk_bytes="64MB", num_workers=1, compression="zstd")
    tw = time.perf_counter() - t
    zbytes = size(out)
    ds = ld.StreamingDataset(out); t = time.perf_counter()
    for i in order:
        x = ds[int(i)]; assert x["image"].dtype == np.uint16 and x["valid"].dtype == bool
    tr = time.perf_counter() - t
    res["litdata"] = dict(write_s=round(tw, 2), shard_bytes=zbytes, bytes_after_read=size(out), random_read_per_s=round(N / tr),
                          state_dict=hasattr(ds, "state_dict"))
    import webdataset as wds
    out = f"{root}/wds"; os.makedirs(out); t = time.perf_counter()
    with wds.ShardWriter(f"{out}/s-%05d.tar", maxsize=64 << 20) as w:
        for i, (img, valid, meta) in enumerate(samples):
            w.write({"__key__": f"{i:08d}", "image.npy": img, "valid.npy": valid, "meta.json": meta})
    tw = time.perf_counter() - t
    t = time.perf_counter(); n = 0
    for x in wds.WebDataset(sorted(glob.glob(f"{out}/*.tar")), shardshuffle=False).decode():
        assert x["image.npy"].dtype == np.uint16; n += 1
    tr = time.perf_counter() - t
    res["webdataset"] = dict(write_s=round(tw, 2), shard_bytes=size(out), sequential_read_per_s=round(n / tr), random_access=False)
    print(json.dumps({"samples": N, "decoded_bytes": raw_bytes, **res}, indent=1))
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
