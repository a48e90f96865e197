"""Schemathesis fuzzes every operation of /api/schema/ with a token: no 5xx, responses match the schema."""

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

MAX_EXAMPLES = 10
# The fuzzing user's token, set by the fixture for the test that follows it.
AUTH = {}


@pytest.fixture
def api_schema(db, make_user, make_dataset, settings):
    from django.core.cache import cache
    from rest_framework.authtoken.models import Token

    from labeling.models import LabelClass
    from project.wsgi import application
    from tests.factories import ImageFactory

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    settings.DEBUG_PROPAGATE_EXCEPTIONS = True
    user = make_user("fuzzer")
    dataset = make_dataset("Fuzz", admin=user)
    for i in range(3):
        LabelClass.objects.create(dataset=dataset, name=f"class {i}")
        ImageFactory(dataset=dataset, width=4, height=4, original_name=f"{i}.png")
    token = Token.objects.create(user=user).key
    AUTH["Authorization"] = f"Token {token}"
    # Like Django's test client: a request must not close the test's
    # connection (and with it the transaction the test runs in).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.from_wsgi("/api/schema/?format=json", application)
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


schema = schemathesis.from_pytest_fixture("api_schema")


@schema.parametrize()
@hypothesis_settings(
    max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
def test_api_operation(case):
    response = case.call_wsgi(headers=dict(AUTH))
    case.validate_response(response, checks=(not_a_server_error, response_schema_conformance))
