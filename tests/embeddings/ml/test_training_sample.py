"""What lets the worker decode only training's sample: the sample drawn apart from training, and the
input size and channels chosen from grouped sizes and modes, give the same answers as before."""

import numpy as np
import pytest
import torch
from tiny import tiny_train_config

from embeddings.ml.inference import embed_images
from embeddings.ml.pipeline import run_pipeline
from embeddings.ml.preprocess import choose_input_spec
from embeddings.ml.training import train_autoencoder, training_sample


def _images(n=80, size=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.1, (n, 1, size, size)).astype(np.float32)
    x[: n // 2, :, :6, :6] += 0.8
    x[n // 2 :, :, 6:, 6:] += 0.8
    return np.clip(x, 0, 1)


def test_the_sample_is_the_draw_training_made_and_none_when_every_image_trains():
    config = tiny_train_config(max_train_images=30, seed=3)
    expected = np.sort(np.random.default_rng(3).choice(80, 30, replace=False))  # training's draw before
    assert np.array_equal(training_sample(80, config), expected)
    assert training_sample(30, config) is None
    assert training_sample(80, tiny_train_config(max_train_images=None)) is None


def test_training_on_the_sample_and_the_labeled_images_alone_equals_training_on_all():
    """The worker passes only the decoded sample and labeled images, with the sample's rows:
    the model, its losses and its codes are those of training on every image."""
    x = _images()
    labels = np.full(len(x), -1)
    labels[[3, 5, 50, 60, 70]] = [0, 0, 1, 1, 1]
    config = tiny_train_config(epochs=2, max_train_images=30, batch_norm=False, labels_batch_size=4)
    whole = train_autoencoder(x, config, labels=labels)

    sample = training_sample(len(x), config)
    read = np.union1d(sample, np.flatnonzero(labels >= 0))
    assert len(read) < len(x)
    part = train_autoencoder(x[read], config, labels=labels[read], train_rows=np.flatnonzero(np.isin(read, sample)))
    assert part.loss_curve == whole.loss_curve and part.labels_used == whole.labels_used == 5
    for a, b in zip(part.model.state_dict().values(), whole.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_streamed_pipeline_drops_the_training_images_and_embeds_through_its_reader():
    x = _images(40)
    seen = []

    def embed(model, images):
        seen.append(images)
        return embed_images(model, x, batch_size=16)

    config = tiny_train_config(epochs=1, max_train_images=20)
    streamed = run_pipeline(x[:20], config, embed=embed, embed_streams=True, train_rows=np.arange(20))
    assert seen == [None] and streamed.codes.shape == (40, 4) and streamed.clusters.shape == (40,)
    with pytest.raises(ValueError, match="embed_streams"):
        run_pipeline(x, config, embed_streams=True)


@pytest.mark.parametrize("seed", range(20))
def test_grouped_sizes_and_modes_choose_what_one_per_image_chooses(seed):
    rng = np.random.default_rng(seed)
    groups = [
        ((int(rng.integers(8, 90)), int(rng.integers(8, 90))), str(rng.choice(["L", "RGB", "1", "P"])))
        for _ in range(int(rng.integers(1, 6)))
    ]
    counts = [int(c) for c in rng.integers(0, 7, len(groups))]
    if not sum(counts):
        counts[0] = 1
    sizes = [size for (size, _), c in zip(groups, counts, strict=True) for _ in range(c)]
    modes = [mode for (_, mode), c in zip(groups, counts, strict=True) for _ in range(c)]
    grouped = choose_input_spec([g[0] for g in groups], [g[1] for g in groups], counts=counts)
    assert grouped == choose_input_spec(sizes, modes)


def test_grouped_even_count_median_averages_the_middle_two():
    # sides 16 and 24, two images each: the median side is 20, as statistics.median says
    assert choose_input_spec([(16, 16), (24, 24)], ["L", "L"], counts=[2, 2]) == (20, 1)
    assert choose_input_spec([(16, 16), (24, 24)], ["L", "RGB"], counts=[3, 0]) == (16, 1)  # no RGB image
