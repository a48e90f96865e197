"""The map endpoint's transport: gzip without the middleware, ETag revalidation."""

import gzip

from django.urls import reverse

from labeling.services.annotations import annotations_apply_bulk


def test_map_is_sent_gzipped_when_accepted_and_plain_otherwise(mapped, client_for):
    client = client_for(mapped.annotator)
    url = reverse("dataset-map", kwargs={"dataset_id": mapped.dataset.pk})
    plain = client.get(url)
    assert plain.status_code == 200 and plain["Content-Type"] == "application/json"
    assert "Content-Encoding" not in plain and "Accept-Encoding" in plain["Vary"]
    packed = client.get(url, HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert packed.status_code == 200 and packed["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.content) == plain.content
    assert plain.json()["image_ids"] == [image.pk for image in mapped.images]


def test_map_answers_304_until_labels_change(mapped, client_for):
    client = client_for(mapped.annotator)
    url = reverse("dataset-map", kwargs={"dataset_id": mapped.dataset.pk})
    first = client.get(url)
    etag = first["ETag"]
    assert etag.startswith('W/"') and first["Cache-Control"] == "private, no-cache"
    again = client.get(url, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again["ETag"] == etag and not again.content
    annotations_apply_bulk(
        dataset=mapped.dataset, user=mapped.admin, label_class=mapped.one, image_ids=[mapped.images[0].pk]
    )
    changed = client.get(url, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    assert changed.json()["class"][0] == mapped.one.pk


def test_map_of_a_dataset_you_are_not_in_is_404_even_with_an_etag(mapped, client_for):
    url = reverse("dataset-map", kwargs={"dataset_id": mapped.dataset.pk})
    etag = client_for(mapped.annotator).get(url)["ETag"]
    response = client_for(mapped.outsider).get(url, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 404
