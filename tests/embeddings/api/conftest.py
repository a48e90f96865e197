"""Fixtures for the runs / map / clusters / similar API tests."""

import pytest


@pytest.fixture(autouse=True)
def _fresh_run_cache():
    from embeddings.selectors import clear_run_cache

    clear_run_cache()
    yield
    clear_run_cache()


@pytest.fixture
def mapped(make_user, make_dataset):
    """A dataset of 6 images on a succeeded map: two clusters of three, one suggestion each."""
    from types import SimpleNamespace

    from tests.factories import ImageFactory, LabelClassFactory, build_map

    admin, annotator, outsider = make_user("alice"), make_user("anna"), make_user("oscar")
    dataset = make_dataset("Digits", admin=admin, members={annotator: "annotator"})
    other = make_dataset("Other", admin=outsider)
    zero = LabelClassFactory(dataset=dataset, name="zero")
    one = LabelClassFactory(dataset=dataset, name="one")
    images = ImageFactory.create_batch(6, dataset=dataset, width=4, height=4)
    points = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (10.0, 10.0), (11.0, 10.0), (10.0, 11.0)]
    positions = {image: (x, y, 0 if i < 3 else 1) for i, (image, (x, y)) in enumerate(zip(images, points, strict=True))}
    run, _, _ = build_map(
        dataset,
        positions=positions,
        suggestions={image: (zero, 0.9) if i < 3 else (one, 0.4) for i, image in enumerate(images)},
        created_by=admin,
        metrics={"final_loss": 0.1},
        loss_curve=[0.5, 0.2, 0.1],
        params={"epochs": 3},
    )
    return SimpleNamespace(
        admin=admin,
        annotator=annotator,
        outsider=outsider,
        dataset=dataset,
        other=other,
        zero=zero,
        one=one,
        images=images,
        run=run,
    )
