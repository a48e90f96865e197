"""Model predictions in headless Chromium: the map's Suggestions card offers an uploaded model as a source
and accepts its predictions as one action; the image page lists each model's prediction.

Screenshots of the card and the image page are written to $SIMLABEL_SCREENSHOTS when it is set.
"""

import os
from pathlib import Path

import pytest

from tests.e2e.test_labeling_flow import login
from tests.factories import build_map

pytestmark = [pytest.mark.browser]


def _shot(locator, name):
    folder = os.environ.get("SIMLABEL_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        locator.screenshot(path=str(Path(folder) / name))


def test_suggestions_card_accepts_a_models_predictions(browser_page, live_server, make_user, make_dataset):
    from labeling.models import Annotation, AnnotationSource, LabelAction
    from labeling.services.predictions import predictions_upload

    page = browser_page
    anna = make_user("anna", password="pw-Secret-123")
    admin = make_user("alice")
    dataset = make_dataset(name="Pets", admin=admin, members={anna: "annotator"})
    run, (cat, dog), (blob_a, blob_b) = build_map(dataset, blob_sizes=(20, 20), stored=True)
    # The neighbors suggest nothing yet (no labels); the model is sure of blob a, unsure of blob b.
    items = [{"image_id": i, "class": "cat", "confidence": 0.95} for i in blob_a[:12]]
    items += [{"image_id": i, "class": "cat", "confidence": 0.4} for i in blob_a[12:]]
    items += [{"image_id": i, "class": "dog", "confidence": 0.92} for i in blob_b[:5]]
    predictions_upload(dataset=dataset, model="resnet50", items=items)
    predictions_upload(dataset=dataset, model="vit", items=[{"image_id": blob_a[0], "class": "dog", "confidence": 0.6}])

    login(page, "anna", "pw-Secret-123")
    page.goto(f"/datasets/{dataset.pk}/map/")
    page.wait_for_selector("body[data-map-ready=true]", timeout=30_000)
    card = page.locator("#suggestions-card")
    assert card.is_visible() and page.locator("#suggestions-source-row").is_visible()
    options = page.locator("#suggestions-source option").all_inner_texts()
    assert options == ["Neighbors (label spreading)", "Model resnet50 (25)", "Model vit (1)"]

    page.select_option("#suggestions-source", "model:resnet50")
    cat_row = page.locator(f"#suggestion-rows [data-suggested-class='{cat.pk}']")
    cat_row.wait_for()
    assert page.text_content("#suggestions-who") == "with a class predicted by model resnet50"
    # A model's confidences are its own: the floor's note does not promise calibration for them.
    assert "not calibrated" in page.text_content("#suggestions-default-floor")
    page.fill("#suggestions-min-confidence", "90")
    assert cat_row.locator("button").inner_text() == "Accept 12"
    _shot(card, "predictions-map-card.png")

    before = LabelAction.objects.count()
    cat_row.locator("button").click()
    page.click("#accept-preview button.confirm-accept")
    page.wait_for_selector("#undo-last")
    labeled = dict(
        Annotation.objects.filter(dataset=dataset, label_class__isnull=False).values_list("image_id", "source")
    )
    assert labeled == {i: AnnotationSource.PREDICTION for i in blob_a[:12]}
    assert LabelAction.objects.count() == before + 1
    assert page.text_content("#count-unlabeled") == "28"
    # After the refresh the card still shows the model's remaining predictions: the dog ones.
    dog_row = page.locator(f"#suggestion-rows [data-suggested-class='{dog.pk}']")
    assert dog_row.locator("button").inner_text() == "Accept 5"

    page.click("#undo-last")
    page.wait_for_function("() => document.getElementById('count-unlabeled').textContent === '40'")
    assert not Annotation.objects.filter(dataset=dataset, label_class__isnull=False).exists()

    # The image page lists each model's prediction with its confidence.
    page.goto(f"/images/{blob_a[0]}/")
    section = page.locator("#predictions")
    assert section.is_visible()
    rows = section.locator("tbody tr").all_inner_texts()
    assert [" ".join(r.split()) for r in rows] == ["resnet50 cat 95 %", "vit dog 60 %"]
    _shot(page.locator("main"), "predictions-image-page.png")
    page.watch.check(page)
