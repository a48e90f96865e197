"""run_pipeline_on_codes: uploaded vectors go straight to the layout and the clusters."""

import numpy as np

from embeddings.ml.config import ClusterConfig, LayoutConfig
from embeddings.ml.pipeline import run_pipeline_on_codes


def _codes(per_group=20, dim=12, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 8, (3, dim))
    group = np.repeat(np.arange(3), per_group)
    return (centers[group] + rng.normal(0, 1, (len(group), dim))).astype(np.float64), group


CONFIGS = (LayoutConfig(early_exaggeration_iter=25, n_iter=50, n_jobs=1), ClusterConfig(method="kmeans", n_clusters=3))


def test_codes_are_laid_out_and_clustered_without_a_model():
    codes, group = _codes()
    stages, calls = [], []
    result = run_pipeline_on_codes(
        codes,
        *CONFIGS,
        on_stage=stages.append,
        on_progress=lambda stage, step, total, metrics: calls.append(stage),
    )
    assert stages == ["layout", "clustering"] and not result.cancelled
    assert result.model is None and result.recon_error is None and result.loss_curve == []
    assert result.codes.dtype == np.float32 and np.array_equal(result.codes, codes.astype(np.float32))
    assert result.xy.shape == (60, 2) and np.isfinite(result.xy).all()
    # One cluster per group of vectors.
    assert all(len(set(result.clusters[group == g])) == 1 for g in range(3))
    assert len(set(result.clusters.tolist())) == 3
    assert {"layout", "clustering", "total"} <= set(result.timings) and set(calls) <= {"layout"}


def test_a_stop_before_the_layout_returns_a_cancelled_result():
    codes, _ = _codes()
    result = run_pipeline_on_codes(codes, *CONFIGS, should_stop=lambda: True)
    assert result.cancelled and result.xy is None and result.clusters is None
