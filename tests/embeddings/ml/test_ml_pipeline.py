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


def test_pipeline_runs_all_stages_in_order_and_reports_progress():
    stages, calls = [], []
    result = run_pipeline(
        _images(),
        *_configs(),
        on_stage=stages.append,
        on_progress=lambda stage, step, total, metrics: calls.append((stage, step, total)),
    )
    assert not result.cancelled and stages == list(STAGES)
    assert result.codes.shape == (60, 3) and result.recon_error.shape == (60,)
    assert result.xy.shape == (60, 2) and result.xy.dtype == np.float32
    assert result.clusters.shape == (60,) and result.clusters.dtype == np.int32
    assert len(result.loss_curve) == 2 and result.epochs_run == 2
    assert set(STAGES) <= set(result.timings) and set(STAGES) <= set(result.cpu_timings)
    assert {"training", "embedding", "layout"} <= {s for s, _, _ in calls}
    assert all(0 <= step <= total for _, step, total in calls)


def test_pipeline_cancel_stops_in_training():
    stages = []
    result = run_pipeline(_images(), *_configs(), should_stop=lambda: True, on_stage=stages.append)
    assert result.cancelled and result.codes is None and result.xy is None and stages == ["training"]


def test_pipeline_cancel_between_stages_leaves_the_later_ones_undone():
    stages = []
    result = run_pipeline(_images(), *_configs(), on_stage=stages.append, should_stop=lambda: stages[-1] == "embedding")
    assert result.cancelled and result.codes is not None and result.xy is None and stages == ["training", "embedding"]


def test_pipeline_hands_the_model_over_and_takes_another_embedding():
    seen = {}

    def embed(model, images):
        seen["embedded"] = len(images)
        return np.zeros((len(images), 3), dtype=np.float32), np.zeros(len(images), dtype=np.float32)

    result = run_pipeline(
        _images(), *_configs(), after_training=lambda trained: seen.update(model=trained.model), embed=embed
    )
    assert seen["model"] is result.model and seen["embedded"] == 60
    assert not result.recon_error.any() and result.clusters.shape == (60,)
