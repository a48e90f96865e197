"""The dataset page's "Import labels" form in headless Chromium: a CSV labels the images it names and the
page shows the rows that matched nothing; unknown classes are refused until an admin ticks "create";
the import's Undo restores the labels; an annotator gets the form without the create option."""

import pytest
from playwright.sync_api import expect

from tests.e2e.test_labeling_flow import login
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser]


@pytest.fixture
def shelter(shelter_team, add_image):
    from tests.factories import LabelClassFactory

    dataset, alice = shelter_team.dataset, shelter_team.alice
    cat = LabelClassFactory(dataset=dataset, name="cat", color="#e03131")
    images = {name: add_image(dataset, name=name, user=alice) for name in ("a.png", "b.png", "c.png")}
    return dataset, cat, images


def _labels(dataset):
    from labeling.models import Annotation

    return dict(
        Annotation.objects.filter(dataset=dataset, label_class__isnull=False).values_list(
            "image__original_name", "label_class__name"
        )
    )


def _import(page, content: bytes, format="csv"):
    page.set_input_files("#id_import_file", files=[{"name": "labels.csv", "mimeType": "text/csv", "buffer": content}])
    page.select_option("#id_import_format", format)
    page.click("#import-labels-submit")


def test_import_labels_from_the_dataset_page(browser_page, live_server, shelter, tmp_path):
    dataset, cat, images = shelter
    page = browser_page
    login(page, "alice", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/")
    expect(page.locator("#import-labels")).to_be_visible()
    page.locator("#import-labels").screenshot(path=str(tmp_path / "import-form.png"))

    _import(page, b"name,class\na.png,cat\nphotos/b.png,cat\nmissing.png,cat\n")
    expect(page.locator("#import-summary")).to_contain_text("Read 3 row(s): 2 image(s) labeled")
    expect(page.locator("#import-summary")).to_contain_text("Left out: 1 unmatched (listed below).")
    expect(page.locator(".import-row")).to_have_count(1)
    expect(page.locator(".import-row")).to_contain_text("no image of this dataset is named 'missing.png'")
    assert _labels(dataset) == {"a.png": "cat", "b.png": "cat"}
    page.locator("#import-labels").screenshot(path=str(tmp_path / "import-report.png"))

    # A class the dataset lacks: refused, nothing changes, and the admin is told how to go on.
    _import(page, b"name,class\nb.png,dog\nc.png,dog\n")
    expect(page.locator("#import-error")).to_contain_text("does not have: dog")
    expect(page.locator("#import-labels-result")).to_contain_text("Tick")
    assert _labels(dataset) == {"a.png": "cat", "b.png": "cat"}

    page.check("#id_import_create_classes")
    _import(page, b"name,class\nb.png,dog\nc.png,dog\n")
    expect(page.locator("#import-summary")).to_contain_text("2 image(s) labeled")
    expect(page.locator("#import-labels-result")).to_contain_text("Classes created: dog.")
    assert _labels(dataset) == {"a.png": "cat", "b.png": "dog", "c.png": "dog"}

    # Undo restores what the import changed (b back to cat, c unlabeled); the page then shows the counts.
    page.click("#import-undo")
    expect(page.locator("#toast")).to_contain_text("Undone: 2 image(s) restored")
    expect(page.locator("#import-undone")).to_have_text("Import undone: 2 image(s) restored.")
    assert _labels(dataset) == {"a.png": "cat", "b.png": "cat"}
    page.get_by_role("link", name="Show the labels").click()
    expect(page.locator("#stat-labeled")).to_have_text("2")
    page.screenshot(path=str(tmp_path / "dataset-page.png"), full_page=True)
    page.watch.errors = [e for e in page.watch.errors if "status of 400" not in e]  # the refusal above
    page.watch.check(page)


def test_an_annotator_imports_without_creating_classes(browser_page, live_server, shelter):
    dataset, cat, images = shelter
    page = browser_page
    login(page, "anna", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/")
    expect(page.locator("#import-labels-form")).to_be_visible()
    expect(page.locator("#id_import_create_classes")).to_have_count(0)
    _import(page, b"name,class\nc.png,bird\n")
    expect(page.locator("#import-labels-result")).to_contain_text("Ask a dataset admin to add these classes")
    _import(
        page,
        b'[{"data": {"image": "/data/upload/1/0badf00d-c.png"}, "annotations": '
        b'[{"result": [{"type": "choices", "value": {"choices": ["cat"]}}]}]}]',
        format="labelstudio",
    )
    expect(page.locator("#import-summary")).to_contain_text("1 image(s) labeled")
    assert _labels(dataset) == {"c.png": "cat"}
    page.watch.errors = [e for e in page.watch.errors if "status of 400" not in e]
    page.watch.check(page)
