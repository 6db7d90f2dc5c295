"""Every endpoint in the served OpenAPI description answers as documented: schemathesis
generates requests from /api/openapi.json (valid ones and invalid ones) and checks each
answer's status code, content type and body against the description, and that none is a
server error. Against the live server, with a staff token, so the staff endpoints run too.

(schemathesis's own pytest plugin does not run under pytest 9 yet, so the cases are drawn
with its Hypothesis strategies directly.)"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from api.tokens import api_token_create

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = 6  # per endpoint and mode: enough to catch a wrong status or shape, fast to run
# Endpoints whose input carries content no schema describes (image bytes, base64 images, an
# embedding of the index's dimension, label text without control characters, checked by the
# same function as uploads): schema-valid random input is rightly refused there with a 400, so
# "valid data is accepted" is not checked for them; every other check is.
CONTENT_CHECKED = {
    "POST /api/search",
    "POST /api/images",
    "PATCH /api/images/{image_id}",
    "POST /knn-service",
}
# Query strings, paths and forms carry only strings: a "negative" value schemathesis makes by
# changing a type (a number into an array, a boolean into a string) often arrives as a valid
# string, so "invalid data is rejected" is checked where types survive: the JSON bodies. Invalid
# input everywhere is still checked for server errors, undocumented statuses and wrong shapes.
TYPED_BODIES = {"PATCH /api/images/{image_id}", "POST /knn-service", "POST /metadata"}


def _check(operation, mode: GenerationMode, headers: dict[str, str]) -> None:
    excluded = [positive_data_acceptance] if operation.label in CONTENT_CHECKED else []
    if operation.label not in TYPED_BODIES:
        excluded.append(negative_data_rejection)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def answers_as_documented(case):
        case.call_and_validate(headers=headers, excluded_checks=excluded)

    try:
        answers_as_documented()
    except Unsatisfiable:
        assert mode == GenerationMode.NEGATIVE  # nothing to make invalid: no parameters, no body
    except Exception as exc:
        raise AssertionError(f"{operation.label} ({mode}) does not answer as documented") from exc


def test_every_documented_endpoint_answers_as_documented(live_server, served_library, staff_user):
    _, key = api_token_create(user=staff_user, name="schemathesis")
    headers = {"Authorization": f"Bearer {key}"}
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12, [op.label for op in operations]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _check(operation, mode, headers)
