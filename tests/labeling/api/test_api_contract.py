"""Hostile requests against the API contract: nesting, body size, list lengths, URLs and query parameters.

Routes are enumerated from the URL resolver, so a new /api/ route is covered
without editing this file.
"""

import json
import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from core.api.contract import ApiView, declared_query_parameters
from embeddings.ml.geometry import MAX_POLYGON_VERTICES
from labeling.models import Annotation, Dataset
from labeling.services.annotations import MAX_BULK_IMAGES, annotations_apply_bulk

WRITE_METHODS = ("post", "put", "patch", "delete")


def _api_routes(patterns=None, prefix=""):
    """(route, view class) for every DRF view under /api/, straight from the URL resolver."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _api_routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern) and route.startswith("api/"):
            view_class = getattr(entry.callback, "view_class", None) or getattr(entry.callback, "cls", None)
            if view_class is not None and not view_class.__module__.startswith("drf_spectacular"):
                yield route, view_class


ROUTES = sorted(set(_api_routes()), key=lambda item: item[0])
OPERATIONS = [
    (route, view, method) for route, view in ROUTES for method in ("get", *WRITE_METHODS) if hasattr(view, method)
]
LISTS = [
    route for route, view, method in OPERATIONS if method == "get" and "page" in declared_query_parameters(route, "GET")
]
DETAIL_ROUTES = [route for route, _ in ROUTES if "<" in route]


def test_the_enumeration_sees_the_api():
    assert len(ROUTES) >= 20 and len(LISTS) >= 6
    assert "api/datasets/<int:dataset_id>/" in DETAIL_ROUTES


@pytest.mark.parametrize("route", [route for route, _ in ROUTES])
def test_every_api_view_keeps_the_contract(route):
    view = dict(ROUTES)[route]
    assert issubclass(view, ApiView), f"{view.__name__} must subclass core.api.contract.ApiView"


def _url(route, team, **overrides):
    """A concrete URL for a route, with ids the team's admin may use."""
    ids = {
        "dataset_id": team.dataset.pk,
        "image_id": team.images[0].pk,
        "class_id": team.spare.pk,
        "user_id": team.extra.pk,
        "action_id": 10**9,
        "run_id": 10**9,
        "backbone_id": 10**9,
        "storage_id": 10**9,
        "webhook_id": 10**9,
        "model": "no-such-model",
        **overrides,
    }
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids[m.group(1)]), route)


def _assert_error(response, status, code):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code and body["detail"], body
    return body


# --- 13: nesting --------------------------------------------------------------------------------------------------

JSON_BODY_OPERATIONS = [(route, method) for route, view, method in OPERATIONS if method in ("post", "put", "patch")]


@pytest.mark.parametrize("route,method", JSON_BODY_OPERATIONS)
def test_deeply_nested_json_is_a_400_everywhere(route, method, team, client_for, snapshot):
    before = snapshot()
    body = "[" * 1000 + "]" * 1000
    response = client_for(team.admin).generic(method.upper(), _url(route, team), body, content_type="application/json")
    # Endpoints that take no body never parse it; every other one refuses it without a RecursionError.
    assert response.status_code < 500
    if response.status_code == 400:
        assert response.json()["code"] == "parse_error"
    assert snapshot() == before


def test_nested_json_to_the_anonymous_token_endpoint(client_for):
    for body in ("[" * 1000 + "]" * 1000, '{"username": ' + "{" * 5000):
        body = _assert_error(
            client_for(None).generic("POST", reverse("api-token"), body, content_type="application/json"),
            400,
            "parse_error",
        )
    assert "nested deeper than 32" in body["detail"]


def test_nesting_at_the_limit_still_parses(team, client_for):
    """32 levels is JSON the parser hands on (the serializer then judges it); 33 is refused."""
    url = reverse("dataset-list")
    client = client_for(team.admin)
    ok = client.generic(
        "POST", url, '{"name": "x", "description": ' + "[" * 31 + "]" * 31 + "}", content_type="application/json"
    )
    _assert_error(ok, 400, "invalid")  # a list is no description, but it was parsed
    deep = client.generic(
        "POST", url, '{"name": "x", "description": ' + "[" * 32 + "]" * 32 + "}", content_type="application/json"
    )
    _assert_error(deep, 400, "parse_error")
    # Brackets inside strings are text, not nesting.
    created = client.post(url, {"name": "[" * 100, "description": '"{' * 100}, format="json")
    assert created.status_code == 201 and created.json()["name"] == "[" * 100


# --- 14: body size and list lengths -----------------------------------------------------------------------------


def test_oversize_json_body_is_413_before_it_is_read(team, client_for, settings):
    settings.SIMLABEL_MAX_JSON_BYTES = 1000
    client = client_for(team.admin)
    url = reverse("dataset-list")
    small = json.dumps({"name": "fits"})
    assert client.generic("POST", url, small, content_type="application/json").status_code == 201
    # Valid JSON that would create a dataset, padded past the limit: refused, so nothing was created.
    padded = json.dumps({"name": "too big"}) + " " * 2000
    _assert_error(client.generic("POST", url, padded, content_type="application/json"), 413, "too_large")
    # Form bodies too.
    _assert_error(
        client.generic("POST", url, "name=" + "x" * 2000, content_type="application/x-www-form-urlencoded"),
        413,
        "too_large",
    )
    assert not Dataset.objects.filter(name__in=["too big", "x" * 2000]).exists()


def test_a_60_mb_content_length_is_refused_without_reading(client_for):
    """Anonymous, to the token endpoint: 413 from the header alone. The test client's body is 2 bytes,
    and reading past them would raise, so the answer proves nothing read the body."""
    response = client_for(None).generic(
        "POST", reverse("api-token"), b"{}", content_type="application/json", CONTENT_LENGTH=str(60 * 1024 * 1024)
    )
    _assert_error(response, 413, "too_large")


def test_the_upload_keeps_its_own_limit(team, client_for, settings, make_png):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.SIMLABEL_MAX_JSON_BYTES = 100
    image = make_png(size=(64, 64), seed=7)
    assert len(image) > 100
    url = reverse("image-list", kwargs={"dataset_id": team.dataset.pk})
    response = client_for(team.admin).post(url, {"files": [SimpleUploadedFile("a.png", image, "image/png")]})
    assert response.status_code == 201 and len(response.json()["created"]) == 1
    settings.SIMLABEL_MAX_UPLOAD_BYTES = 100
    response = client_for(team.admin).post(url, {"files": [SimpleUploadedFile("b.png", image, "image/png")]})
    _assert_error(response, 413, "too_large")


def test_bulk_of_the_largest_allowed_selection_fits_the_default_body_limit(settings):
    ids = list(range(9_000_000, 9_000_000 + MAX_BULK_IMAGES))
    body = json.dumps({"class": 1, "image_ids": ids, "expected": {str(i): 12345 for i in ids}})
    assert len(body) < settings.SIMLABEL_MAX_JSON_BYTES
    polygon = json.dumps({"class": 1, "polygon": [[-123.45678901234567, 98.76543210987654]] * MAX_POLYGON_VERTICES})
    assert len(polygon) < settings.SIMLABEL_MAX_JSON_BYTES


def _huge_body_cases(team):
    bulk = reverse("annotation-bulk", kwargs={"dataset_id": team.dataset.pk})
    accept = reverse("suggestions-accept", kwargs={"dataset_id": team.dataset.pk})
    resolve = reverse("review-resolve", kwargs={"dataset_id": team.dataset.pk})
    million_bad = ["x"] * 10**6  # invalid elements: any per-element work would answer with their errors
    return [
        (bulk, {"class": team.cat.pk, "polygon": million_bad}, "polygon", MAX_POLYGON_VERTICES),
        (bulk, {"class": team.cat.pk, "polygon": [[0, 0]] * 10**6}, "polygon", MAX_POLYGON_VERTICES),
        (bulk, {"class": team.cat.pk, "image_ids": million_bad}, "image_ids", MAX_BULK_IMAGES),
        (bulk, {"class": team.cat.pk, "image_ids": list(range(1, 10**6 + 1))}, "image_ids", MAX_BULK_IMAGES),
        (
            bulk,
            {"class": team.cat.pk, "cluster": 0, "exclude_image_ids": million_bad},
            "exclude_image_ids",
            MAX_BULK_IMAGES,
        ),
        (
            bulk,
            {"class": team.cat.pk, "image_ids": [team.images[0].pk], "expected": {str(i): "x" for i in range(10**6)}},
            "expected",
            MAX_BULK_IMAGES,
        ),
        (accept, {"image_ids": million_bad}, "image_ids", MAX_BULK_IMAGES),
        (
            resolve,
            {
                "kind": "image",
                "id": team.images[0].pk,
                "outcome": "relabelled",
                "class": team.cat.pk,
                "image_ids": million_bad,
            },
            "image_ids",
            MAX_BULK_IMAGES,
        ),
    ]


def test_a_million_elements_are_refused_by_length_alone(team, client_for, settings, snapshot):
    settings.SIMLABEL_MAX_JSON_BYTES = 64 * 1024 * 1024  # let the bodies through to the serializers
    client = client_for(team.admin)
    before = snapshot()
    for url, payload, field, limit in _huge_body_cases(team):
        body = _assert_error(client.post(url, payload, format="json"), 400, "invalid")
        assert body["detail"].startswith(f"{field}: Ensure this field has no more than {limit} ")
        assert body["errors"] == {field: [body["detail"].split(": ", 1)[1]]}  # one message, not one per element
    assert snapshot() == before


def test_bad_elements_within_the_limit_get_a_bounded_answer(team, client_for):
    bulk = reverse("annotation-bulk", kwargs={"dataset_id": team.dataset.pk})
    client = client_for(team.admin)
    body = _assert_error(
        client.post(bulk, {"class": team.cat.pk, "image_ids": ["x"] * MAX_BULK_IMAGES}, format="json"), 400, "invalid"
    )
    assert body["detail"].startswith("image_ids.0: ") and len(body["errors"]["image_ids"]) == 100
    body = _assert_error(
        client.post(
            bulk,
            {
                "class": team.cat.pk,
                "image_ids": [team.images[0].pk],
                "expected": {str(i): "x" for i in range(MAX_BULK_IMAGES)},
            },
            format="json",
        ),
        400,
        "invalid",
    )
    assert len(body["errors"]["expected"]) == 100


@pytest.mark.parametrize(
    "ids, error",
    [
        ([3, 1, 2], None),
        (["3", 1], None),  # DRF's path: strings of digits are ids too
        ([1, 0], "image_ids.1: "),  # below the bound
        ([1, 2**63], "image_ids.1: "),  # above it
        ([True, 2], "image_ids.0: "),  # a JSON boolean is not an id
        ([1, None], "image_ids.1: "),
        ([1, 2.5], "image_ids.1: "),
    ],
)
def test_id_lists_take_the_plain_integer_path_only_when_drf_would_accept_them_unchanged(ids, error):
    from labeling.api.serializers import BulkSerializer

    serializer = BulkSerializer(data={"class": 1, "image_ids": ids})
    if error is None:
        assert serializer.is_valid(), serializer.errors
        assert serializer.validated_data["image_ids"] == [int(i) for i in ids]
    else:
        assert not serializer.is_valid()
        index = int(error.split(".")[1].rstrip(": "))
        assert list(serializer.errors["image_ids"]) == [index]


def test_a_million_elements_under_the_default_limit_are_413(team, client_for):
    cases = _huge_body_cases(team)
    for url, payload, _, _ in (cases[1], cases[3]):  # 10**6 points, 10**6 real ids: 6-8 MB
        _assert_error(client_for(team.admin).post(url, payload, format="json"), 413, "too_large")


# --- 17: URLs, pagination and query parameters --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/nope/",
        "/api/datasets/abc/",
        "/api/datasets/1/nope/",
        "/api/images/1.5/",
        "/api/runs/-1/",
        "/api/datasets/%C2%B2/",
        "/api/",
    ],
)
def test_unknown_api_urls_are_json_404(path, team, client_for):
    for client in (client_for(team.admin), client_for(None)):
        _assert_error(client.get(path), 404, "not_found")
        _assert_error(client.post(path, {}, format="json"), 404, "not_found")


def test_a_missing_trailing_slash_still_redirects_reads(team, client_for):
    client = client_for(team.admin)
    response = client.get("/api/datasets?page=1")
    assert response.status_code == 301 and response["Location"] == "/api/datasets/?page=1"
    body = _assert_error(client.post("/api/datasets", {"name": "x"}, format="json"), 404, "not_found")
    assert "/api/datasets/" in body["detail"]
    assert not Dataset.objects.filter(name="x").exists()


@pytest.mark.parametrize("route", DETAIL_ROUTES)
def test_non_integer_ids_are_json_404_on_every_route(route, team, client_for):
    names = re.findall(r"<(?:\w+:)?(\w+)>", route)
    for name in names:
        for bad in ("abc", "1e3", "%C2%B2", "0x1"):
            _assert_error(client_for(team.admin).get(_url(route, team, **{name: bad})), 404, "not_found")


def test_page_outside_the_api_keeps_django_404(client, db):
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and not response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("route", LISTS)
def test_one_pagination_rule_on_every_list(route, team, client_for):
    client = client_for(team.admin)
    url = _url(route, team)
    assert client.get(url, {"page": 1, "page_size": 500}).status_code == 200
    for query in (
        {"page": "abc"},
        {"page": 0},
        {"page": -1},
        {"page": "²"},
        {"page": "1.0"},
        {"page": "last"},
        {"page_size": "abc"},
        {"page_size": 0},
        {"page_size": 501},
        {"page_size": -5},
    ):
        body = _assert_error(client.get(url, query), 400, "invalid")
        assert next(iter(query)) in body["detail"]
    _assert_error(client.get(url, {"page": 10**6}), 404, "not_found")
    _assert_error(client.get(url + "?page=1&page=2"), 400, "invalid")


@pytest.mark.parametrize("route,method", [(route, method) for route, _, method in OPERATIONS])
def test_unknown_repeated_or_empty_query_parameters_are_400_everywhere(route, method, team, client_for, snapshot):
    client = client_for(team.admin)
    url = _url(route, team)
    before = snapshot()
    declared = sorted(declared_query_parameters(route, method.upper()))
    queries = ["?no_such_parameter=1", "?format=json" if "format" not in declared else "?fmt=json"]
    for name in declared:
        queries += [f"?{name}=", f"?{name}=1&{name}=2"]
    for query in queries:
        response = client.generic(method.upper(), url + query, "{}", content_type="application/json")
        _assert_error(response, 400, "invalid")
    assert snapshot() == before


def test_stale_version_with_an_extra_empty_one_does_not_clear(team, client_for):
    image = team.images[0]
    annotations_apply_bulk(dataset=team.dataset, user=team.admin, label_class=team.cat, image_ids=[image.pk])
    annotations_apply_bulk(dataset=team.dataset, user=team.admin, label_class=team.dog, image_ids=[image.pk])
    url = reverse("image-annotation", kwargs={"image_id": image.pk})
    client = client_for(team.annotator)
    for query in ("?version=1&version=", "?version=", "?version=1&version=2"):
        _assert_error(client.delete(url + query), 400, "invalid")
    assert Annotation.objects.get(image=image).label_class_id == team.dog.pk
    assert client.delete(url + "?version=1").status_code == 409  # stale: still the version check
    assert client.delete(url + "?version=2").status_code == 200


def test_the_schema_states_the_rules(client):
    schema = client.get("/api/schema/?format=json").json()
    assert "only those listed for an operation are accepted" in schema["info"]["description"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "400" in operation["responses"], (method, path)
            if "requestBody" in operation:
                assert "413" in operation["responses"], (method, path)
            params = {p["name"]: p["schema"] for p in operation.get("parameters", ()) if p["in"] == "query"}
            if "page" in params:
                assert params["page"].get("minimum") == 1, (method, path)
                assert (params["page_size"].get("minimum"), params["page_size"].get("maximum")) == (1, 500)
                assert "404" in operation["responses"], (method, path)
