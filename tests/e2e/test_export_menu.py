"""The dataset page's export menu offers YOLO, Hugging Face and Label Studio, and each link downloads
that format in Chromium with the page's session (no token)."""

import io
import json
import os
import zipfile

import pytest

from labeling.services.annotations import annotations_apply_bulk
from tests.e2e.test_labeling_flow import login
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser]


@pytest.fixture
def shelter(shelter_team, add_image):
    from tests.factories import LabelClassFactory

    dataset, admin = shelter_team.dataset, shelter_team.alice
    cat = LabelClassFactory(dataset=dataset, name="cat")
    dog = LabelClassFactory(dataset=dataset, name="dog")
    cats = [add_image(dataset, name=f"cat{n}.png") for n in range(2)]
    dogs = [add_image(dataset, name=f"dog{n}.png") for n in range(2)]
    add_image(dataset, name="raw.png")
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=cat, image_ids=[i.pk for i in cats])
    annotations_apply_bulk(dataset=dataset, user=admin, label_class=dog, image_ids=[i.pk for i in dogs])
    return dataset, cats + dogs


def test_export_menu_downloads_the_new_formats(browser_page, shelter, tmp_path):
    dataset, labeled = shelter
    page = browser_page
    login(page, "anna", PASSWORD)
    page.goto(f"/datasets/{dataset.pk}/")
    if os.environ.get("SIMLABEL_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["SIMLABEL_SCREENSHOTS"], "export-menu.png"))

    downloads = {}
    for text, fmt in (("YOLO zip", "yolo"), ("Hugging Face", "hf"), ("Label Studio JSON", "labelstudio")):
        link = page.get_by_role("link", name=text, exact=True)
        assert link.get_attribute("href") == f"/api/datasets/{dataset.pk}/export/?format={fmt}"
        with page.expect_download() as info:
            link.click()
        download = info.value
        path = tmp_path / download.suggested_filename
        download.save_as(path)
        downloads[fmt] = (download.suggested_filename, path.read_bytes())

    name, body = downloads["yolo"]
    assert name == f"Shelter-{dataset.pk}-labels-yolo.zip"
    members = zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert sorted(m.split("/")[2] for m in members) == ["cat", "cat", "dog", "dog"]
    assert all(m.startswith(f"Shelter-{dataset.pk}-labels-yolo/train/") for m in members)

    name, body = downloads["hf"]
    assert name.endswith("-hf.parquet") and body[:4] == b"PAR1" and body[-4:] == b"PAR1"

    name, body = downloads["labelstudio"]
    tasks = json.loads(body)
    assert sorted(t["id"] for t in tasks) == sorted(i.pk for i in labeled)
    assert all(t["data"]["image"].startswith(("http://localhost", "http://127.0.0.1")) for t in tasks)
    page.watch.check(page)
