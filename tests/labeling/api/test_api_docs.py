"""The OpenAPI schema and the docs page (which must run under the CSP: no inline scripts, no CDN)."""

import re

from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema


def test_schema_is_valid_and_lists_the_contract():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    paths = set(schema["paths"])
    for path in [
        "/api/auth/token/",
        "/api/datasets/",
        "/api/datasets/{dataset_id}/",
        "/api/datasets/{dataset_id}/members/",
        "/api/datasets/{dataset_id}/members/{user_id}/",
        "/api/datasets/{dataset_id}/classes/",
        "/api/datasets/{dataset_id}/images/",
        "/api/images/{image_id}/",
        "/api/images/{image_id}/similar/",
        "/api/images/{image_id}/annotation/",
        "/api/datasets/{dataset_id}/annotations/bulk/",
        "/api/datasets/{dataset_id}/actions/{action_id}/undo/",
        "/api/datasets/{dataset_id}/runs/",
        "/api/runs/{run_id}/",
        "/api/runs/{run_id}/cancel/",
        "/api/datasets/{dataset_id}/map/",
        "/api/datasets/{dataset_id}/clusters/",
        "/api/datasets/{dataset_id}/review/",
        "/api/datasets/{dataset_id}/export/",
    ]:
        assert path in paths, path
    listed = schema["paths"]["/api/datasets/"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listed["$ref"].endswith("PaginatedDatasetList")
    export = schema["paths"]["/api/datasets/{dataset_id}/export/"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "text/csv", "application/zip"} <= set(export)


def test_docs_page_loads_its_scripts_from_our_origin(db):
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "script-src 'self'" in response["Content-Security-Policy"]
    sources = re.findall(r'<script[^>]*src="([^"]+)"', html)
    assert sources and all(src.startswith("/") for src in sources), sources
    inline = [body for body in re.findall(r"<script(?![^>]*src=)[^>]*>(.*?)</script>", html, re.S) if body.strip()]
    assert inline == []
    init = [src for src in sources if "script=" in src]
    assert init and Client().get(init[0]).status_code == 200
