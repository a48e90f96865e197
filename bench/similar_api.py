"""Similar images and cluster purity as a user gets them: through the REST API, on photos no setting was tuned on.

    .venv/bin/python bench/similar_api.py                          # held-out photos (5,000), seeds 0 and 1
    .venv/bin/python bench/similar_api.py --dataset fashion --n 5000 --seeds 0
    .venv/bin/python bench/similar_api.py --variants default,patches-off

For each variant and seed the images are written as PNG files and ingested into a fresh dataset
(not timed), a run is started with `POST /api/datasets/{id}/runs/` and executed in this process as
a worker executes it; then, through DRF's APIClient as the dataset's admin, every image's
`GET /api/images/{id}/similar/?k=10` (the share of the 10 answers whose true class is the image's,
averaged over the images) and `GET /api/datasets/{id}/clusters/` (purity: each cluster counted by
its majority class).  Variants, measured in the same process so the baseline is beside the figure:

- default: the run form's defaults (for color photos: contrastive codes with patch features);
- patches-off: the same with `patch_features: "off"` (the contrastive codes alone);
- pixels: PCA-50 of the pixels uploaded with `POST …/embeddings/` and a run with `embedding: "uploaded"`.

Goal (issue 14, held-out photos): similar-image agreement >= 0.50, default clusters >= 0.45 pure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = {
    "default": {},
    "patches-off": {"patch_features": "off"},
    "pixels": {"embedding": "uploaded"},
}
GOALS = {"similar": 0.50, "purity": 0.45}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="photos", help="bench/datasets.py name (photos: the held-out 5,000)")
    p.add_argument("--n", type=int, default=None, help="a seeded sample of this many images")
    p.add_argument("--seeds", default="0,1", help="the runs' seeds")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    p.add_argument("--k", type=int, default=10)
    return p.parse_args(argv)


def pixels_pca(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    flat = x.reshape(len(x), -1)
    return PCA(n_components=min(50, *flat.shape), random_state=seed).fit_transform(flat).astype(np.float32)


def measure(client, dataset_id: int, truth: dict[int, int], k: int) -> dict:
    """Similar-image agreement over every image and cluster purity, read through the API."""
    agreement = []
    for image_id, cls in truth.items():
        response = client.get(f"/api/images/{image_id}/similar/", {"k": k})
        if response.status_code != 200:
            raise SystemExit(f"similar for image {image_id}: {response.status_code} {response.content[:200]!r}")
        found = [truth[row["id"]] for row in response.json()]
        agreement.append(np.mean([c == cls for c in found]) if found else 0.0)
    response = client.get(f"/api/datasets/{dataset_id}/clusters/")
    if response.status_code != 200:
        raise SystemExit(f"clusters: {response.status_code} {response.content[:200]!r}")
    clusters = response.json()
    majority = sum(np.bincount([truth[i] for i in c["image_ids"]]).max() for c in clusters if c["image_ids"])
    return {
        "similar": float(np.mean(agreement)),
        "purity": majority / len(truth),
        "clusters": len(clusters),
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; one of {list(VARIANTS)}")
    from bench._django import load_average, machine_description
    from bench.datasets import load_dataset
    from bench.label_effort import execute_run, setup_django, write_pngs

    x, y = load_dataset(args.dataset, args.n, 0)
    workdir = Path(tempfile.mkdtemp(prefix="simlabel-similar-api-"))
    setup_django(workdir, None)
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from embeddings.models import TrainingRun
    from labeling.models import Image
    from labeling.services.datasets import dataset_create
    from labeling.services.images import images_ingest_path

    user = get_user_model().objects.create_user(username=f"bench{int(time.time())}", password="x-Bench-123")
    client = APIClient()
    client.force_authenticate(user=user)
    names = write_pngs(x, workdir / "images")
    row_of_name = {name: i for i, name in enumerate(names)}
    results: dict[str, list[dict]] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for variant in variants:
            dataset = dataset_create(user=user, name=f"{args.dataset} {variant} seed {seed}")
            images_ingest_path(dataset=dataset, user=user, path=workdir / "images")
            rows = {
                image_id: row_of_name[Path(name).name]
                for image_id, name in Image.objects.filter(dataset=dataset).values_list("id", "original_name")
            }
            truth = {image_id: int(y[row]) for image_id, row in rows.items()}
            params = {"seed": seed, **VARIANTS[variant]}
            if variant == "pixels":
                codes = pixels_pca(x, seed)
                ids = list(rows)
                body = {"image_ids": ids, "vectors": codes[[rows[i] for i in ids]].tolist()}
                response = client.post(f"/api/datasets/{dataset.pk}/embeddings/", body, format="json")
                if response.status_code not in (200, 201):
                    raise SystemExit(f"upload: {response.status_code} {response.content[:200]!r}")
            response = client.post(f"/api/datasets/{dataset.pk}/runs/", params, format="json")
            if response.status_code != 202:
                raise SystemExit(f"start run: {response.status_code} {response.content[:300]!r}")
            seconds = execute_run(response.json()["id"])
            run = TrainingRun.objects.get(pk=response.json()["id"])
            started = time.perf_counter()
            out = measure(client, dataset.pk, truth, args.k)
            out["run_s"], out["read_s"] = seconds, time.perf_counter() - started
            out["objective"] = run.metrics.get("objective", "-")
            out["patches"] = run.metrics.get("patch_features", "-")
            results.setdefault(variant, []).append(out)
            print(
                f"  {variant} seed {seed}: similar@{args.k} {out['similar']:.3f}, purity {out['purity']:.3f} "
                f"({out['clusters']} clusters); run {seconds:.0f} s, {len(truth)} similar reads {out['read_s']:.0f} s; "
                f"objective {out['objective']}, patch features {out['patches']}",
                flush=True,
            )

    print(f"\n{args.dataset}: {len(x)} images {tuple(x.shape[1:])}, through the REST API; seeds {args.seeds}")
    print(f"{machine_description()}; load average {load_average()} at the end; mean (min-max)")

    def cell(values):
        return f"{np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"

    print(f"{'variant':14s} {'similar@' + str(args.k):>22s} {'cluster purity':>22s} {'run s':>7s}")
    for variant, entries in results.items():
        similar, purity = [e["similar"] for e in entries], [e["purity"] for e in entries]
        print(f"{variant:14s} {cell(similar):>22s} {cell(purity):>22s} {np.mean([e['run_s'] for e in entries]):7.1f}")
    if "default" in results:
        entries = results["default"]
        verdicts = [
            f"{metric} {np.mean([e[metric] for e in entries]):.3f} "
            f"{'meets' if np.mean([e[metric] for e in entries]) >= goal else 'MISSES'} >= {goal:.2f}"
            for metric, goal in GOALS.items()
        ]
        print("default vs the goals: " + "; ".join(verdicts))


if __name__ == "__main__":
    main()
