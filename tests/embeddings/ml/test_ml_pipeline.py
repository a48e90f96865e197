import numpy as np

from embeddings.ml.config import ClusterConfig, LayoutConfig, TrainConfig
from embeddings.ml.pipeline import STAGES, run_pipeline


def _images(n=60, size=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.1, (n, 1, size, size)).astype(np.float32)
    x[: n // 2, :, :6, :6] += 0.8
    x[n // 2 :, :, 6:, 6:] += 0.8
    return np.clip(x, 0, 1)


def _configs():
    return (
        TrainConfig(epochs=2, batch_size=16, code_size=3, depth=2, base_channels=4, input_size=12, patience=None),
        LayoutConfig(early_exaggeration_iter=25, n_iter=50, n_jobs=1),
        ClusterConfig(method="kmeans", n_clusters=2),
    )


def test_pipeline_runs_all_stages_and_reports_each():
    calls = []
    result = run_pipeline(_images(), *_configs(), on_progress=lambda s, f, m: calls.append((s, f)))
    assert not result.cancelled
    assert result.codes.shape == (60, 3) and result.recon_error.shape == (60,)
    assert result.xy.shape == (60, 2) and result.clusters.shape == (60,)
    assert len(result.loss_curve) == 2
    assert set(STAGES) <= set(result.timings)
    seen = [s for s, _ in calls]
    assert [s for s in STAGES if s in seen] == list(STAGES)
    assert all(0.0 <= f <= 1.0 for _, f in calls)


def test_pipeline_cancel_stops_in_training():
    result = run_pipeline(_images(), *_configs(), should_stop=lambda: True)
    assert result.cancelled and result.codes is None and result.xy is None
