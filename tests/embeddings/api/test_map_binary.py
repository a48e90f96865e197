"""The map's binary format (`?format=binary`): the JSON map's values, as typed arrays, with the same access rules."""

import gzip
import json
import struct

import numpy as np
import pytest
from django.urls import reverse

from labeling.services.annotations import annotations_apply_bulk

MEDIA_TYPE = "application/vnd.simlabel.map"


def decode(content: bytes) -> tuple[dict, dict]:
    """(header, {name: values}) read the way map.js reads it: offsets, dtypes, deltas, nulls, scale."""
    assert content[:8] == b"SLMAP01\0"
    header_length, reserved = struct.unpack_from("<II", content, 8)
    assert header_length % 8 == 0 and reserved == 0
    header = json.loads(content[16 : 16 + header_length])
    columns = {}
    for spec in header["columns"]:
        assert spec["offset"] % 8 == 0, spec
        dtype = np.dtype(spec["dtype"]).newbyteorder("<")
        values = np.frombuffer(content, dtype=dtype, count=spec["length"], offset=spec["offset"]).astype(np.float64)
        if spec.get("encoding") == "delta":
            values = np.cumsum(values)
        if "scale" in spec:
            values = np.where(values == spec["null"], np.nan, values * spec["scale"])
        columns[spec["name"]] = values
    return header, columns


def as_json_values(values: np.ndarray, null=None) -> list:
    out = []
    for v in values.tolist():
        if v != v or (null is not None and v == null):
            out.append(None)
        else:
            out.append(v)
    return out


@pytest.fixture
def url(mapped):
    return reverse("dataset-map", kwargs={"dataset_id": mapped.dataset.pk})


def test_binary_carries_the_json_values(mapped, client_for, url):
    annotations_apply_bulk(
        dataset=mapped.dataset, user=mapped.admin, label_class=mapped.one, image_ids=[mapped.images[1].pk]
    )
    client = client_for(mapped.annotator)
    plain = client.get(url).json()
    response = client.get(url, {"format": "binary"})
    assert response.status_code == 200 and response["Content-Type"] == MEDIA_TYPE
    header, columns = decode(response.content)
    assert header["run"] == plain["run"] == mapped.run.pk
    assert header["count"] == plain["count"] == 6 and header["placed_count"] == plain["placed_count"]
    assert header["etag"] == response["ETag"]
    for name in ("image_ids", "cluster", "version"):
        assert [int(v) for v in columns[name]] == plain[name], name
    assert as_json_values(columns["class"], null=-1) == plain["class"]
    assert as_json_values(columns["suggestion"], null=-1) == plain["suggestion"]
    assert np.allclose(columns["confidence"], [np.nan if v is None else v for v in plain["confidence"]], equal_nan=True)
    assert [round(v, 3) for v in columns["confidence"].tolist()] == plain["confidence"]
    for axis in ("x", "y"):
        assert np.abs(columns[axis] - np.array(plain[axis])).max() <= 5e-4 + 1e-6, axis
    assert header["classes"] == [[mapped.one.pk, 1]]
    assert header["clusters"] == [[0, 3], [1, 3]]
    assert plain["version"][1] == 1 and plain["class"][1] == mapped.one.pk


def test_binary_by_accept_header_and_gzip(mapped, client_for, url):
    client = client_for(mapped.annotator)
    plain = client.get(url, {"format": "binary"})
    for accept in (MEDIA_TYPE, "application/octet-stream"):
        packed = client.get(url, HTTP_ACCEPT=accept, HTTP_ACCEPT_ENCODING="gzip")
        assert (
            packed.status_code == 200 and packed["Content-Encoding"] == "gzip" and packed["Content-Type"] == MEDIA_TYPE
        )
        assert gzip.decompress(packed.content) == plain.content
    # The JSON stays the default: scripts that ask for nothing in particular get what they always got.
    assert client.get(url)["Content-Type"] == "application/json"
    assert client.get(url, {"format": "json"}).json()["count"] == 6
    assert client.get(url, HTTP_ACCEPT="text/html")["Content-Type"] == "application/json"
    assert client.get(url, {"format": "json"}, HTTP_ACCEPT=MEDIA_TYPE)["Content-Type"] == "application/json"
    assert "Accept" in plain["Vary"] and "Accept-Encoding" in plain["Vary"]


def test_binary_etag_is_its_own_and_304_until_labels_change(mapped, client_for, url):
    client = client_for(mapped.annotator)
    json_etag = client.get(url)["ETag"]
    first = client.get(url, {"format": "binary"})
    etag = first["ETag"]
    assert etag.startswith('W/"mapb-') and etag != json_etag
    again = client.get(url, {"format": "binary"}, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and not again.content
    annotations_apply_bulk(
        dataset=mapped.dataset, user=mapped.admin, label_class=mapped.zero, image_ids=[mapped.images[4].pk]
    )
    changed = client.get(url, {"format": "binary"}, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    _, columns = decode(changed.content)
    assert int(columns["class"][4]) == mapped.zero.pk and int(columns["version"][4]) == 1


def test_binary_permissions_and_bad_format(mapped, client_for, url, client):
    outsider = client_for(mapped.outsider).get(url, {"format": "binary"})
    assert outsider.status_code == 404 and outsider["Content-Type"] == "application/json"
    assert outsider.json()["code"]
    assert client.get(url, {"format": "binary"}).status_code in (401, 403)
    bad = client_for(mapped.annotator).get(url, {"format": "xml"})
    assert bad.status_code == 400 and bad["Content-Type"] == "application/json"


def test_binary_map_before_the_first_run_is_empty(make_user, make_dataset, client_for):
    admin = make_user("eve")
    dataset = make_dataset("Empty", admin=admin)
    response = client_for(admin).get(
        reverse("dataset-map", kwargs={"dataset_id": dataset.pk}), {"format": "binary"}, HTTP_ACCEPT_ENCODING="gzip"
    )
    header, columns = decode(gzip.decompress(response.content))
    assert header["run"] is None and header["count"] == 0
    assert set(columns) == {"image_ids", "x", "y", "cluster", "class", "version", "suggestion", "confidence"}
    assert all(len(v) == 0 for v in columns.values())
