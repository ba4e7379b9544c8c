"""Batch labelling on a Ray cluster: the same COCO file as `sam3 label`, scaled out.

    python -m sam3_runtime.label_ray --bundle DIR --images FOLDER|LIST --classes "cat,dog" \\
        --out coco.json [--threshold 0.5] [--address HOST:PORT] [--actors N] [--batch-size B]

Ray Data reads the image list, `map_batches` runs it through an actor class that loads the
bundle once per actor (`Labeler`), each actor's output rows are written as JSON shards in
parallel, and the driver merges the shards in input order into one COCO document with the
functions `sam3 label` uses (sam3_runtime.label_image_json / coco_document), so the file is
the same. `--address` joins a running cluster (`ray start --head` ...); without it Ray starts
a local one. On a real cluster the bundle, the images and --out must be on storage every
node sees at the same path (docs/label.md).
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

import sam3_runtime as s3


class Labeler:
    """One per Ray actor: the bundle is loaded once and labels every batch sent to it."""

    def __init__(self, bundle, classes, threshold, device="cpu"):
        self.model = s3.Model(bundle, device)
        self.classes = list(classes)
        self.threshold = float(threshold)

    def __call__(self, batch):
        records = [s3.label_image_json(self.model, str(p), str(n), self.classes, self.threshold)
                   for p, n in zip(batch["path"], batch["file_name"])]
        return {"index": np.asarray(batch["index"]), "record": np.asarray(records, dtype=object)}


def info_json(bundle, classes, threshold):
    """The "info" block `sam3 label` writes."""
    m = s3.read_manifest(bundle)
    return json.dumps({"description": "sam3 label", "classes": classes, "threshold": threshold, "bundle": bundle,
                       "config": m["config"], "weights": m["weights_source"]})


def merge_shards(shard_dir, n):
    """Every row of the JSON-lines shards, back in input order (each index exactly once)."""
    rows = {}
    for name in sorted(os.listdir(shard_dir)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(shard_dir, name)) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    rows[int(r["index"])] = r["record"]
    missing = [i for i in range(n) if i not in rows]
    if missing:
        raise RuntimeError(f"{len(missing)} image(s) missing from the shards (first: index {missing[0]})")
    return [rows[i] for i in range(n)]


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m sam3_runtime.label_ray", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--images", required=True, help="a folder of .jpg/.png images or a list file")
    p.add_argument("--classes", required=True, help='comma-separated class names, e.g. "cat,dog"')
    p.add_argument("--out", required=True, help="the COCO instances JSON to write")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--address", default=None, help="a running Ray cluster (default: start a local one)")
    p.add_argument("--actors", type=int, default=1, help="Labeler actors (each loads the bundle once)")
    p.add_argument("--cpus-per-actor", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=4)
    a = p.parse_args(argv)
    if not 0.0 <= a.threshold <= 1.0:
        p.error("--threshold must be in [0, 1]")
    if a.actors < 1 or a.batch_size < 1:
        p.error("--actors and --batch-size must be at least 1")
    return a


def main(argv=None):
    a = parse_args(argv)
    classes = s3.parse_classes(a.classes)
    if not classes:
        sys.exit("label_ray: error: --classes gives no class name")
    try:
        images = s3.list_images(a.images)
        info = info_json(a.bundle, classes, a.threshold)
    except s3.Error as e:
        sys.exit(f"label_ray: error: {e}")

    # no usage report leaves this machine unless the user asked for it; and a local Ray
    # (no --address) keeps 127.0.0.1 as its node address and listens on it only (Ray
    # otherwise swaps loopback for the machine's outward address)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not a.address:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray  # only here: the package itself does not need Ray

    ray.init(address=a.address, include_dashboard=False, log_to_driver=False,
             **({} if a.address else {"_node_ip_address": "127.0.0.1"}))
    shards = a.out + ".shards"
    shutil.rmtree(shards, ignore_errors=True)
    try:
        ds = ray.data.from_items([{"index": i, "path": p, "file_name": n} for i, (p, n) in enumerate(images)],
                                 override_num_blocks=max(1, min(len(images), a.actors * 4)))
        ds = ds.map_batches(Labeler, fn_constructor_kwargs={"bundle": a.bundle, "classes": classes,
                                                            "threshold": a.threshold, "device": a.device},
                            concurrency=a.actors, batch_size=a.batch_size, num_cpus=a.cpus_per_actor)
        ds.write_json(shards)
        records = merge_shards(shards, len(images))
        doc = s3.coco_document(classes, records, info)
        tmp = a.out + ".writing"
        with open(tmp, "w") as f:
            f.write(doc + "\n")
        os.replace(tmp, a.out)
    finally:
        shutil.rmtree(shards, ignore_errors=True)
        ray.shutdown()
    d = json.loads(doc)
    print(f"{len(d['images'])} image(s), {len(d['annotations'])} annotation(s), {len(d['failed_images'])} failed; "
          f"wrote {a.out}")


if __name__ == "__main__":
    main()
