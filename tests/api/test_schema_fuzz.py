"""The OpenAPI contract, fuzzed against a live server (schemathesis).

Every operation in /api/schema/ gets a bounded number of generated requests (valid and
malformed bodies, query strings and path ids) from an authenticated study owner, against a live
server holding a launched study with a participant, a conversation and an open invitation.
Most path ids are pointed at that study so the requests reach the real lookups and permission
checks instead of stopping at a 404 for an unknown slug. Each response must not be a 5xx, must
match the schema's declared status codes, content type and body schema, and must come within
MAX_RESPONSE_SECONDS.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import launch_study

# Generous for a loaded 2-core CI machine; a request that needs longer is a bug.
MAX_RESPONSE_SECONDS = 5.0
EXAMPLES_PER_OPERATION = 6


@pytest.fixture
def fuzz_target(live_server, transactional_db, study, owner, enroll):
    study = launch_study(study, owner)
    enroll(study)
    token = Token.objects.create(user=owner)
    headers = {"Authorization": f"Token {token.key}"}
    schema = schemathesis.openapi.from_url(live_server.url + reverse("api-schema"), headers=headers)
    return {"schema": schema, "headers": headers, "slug": study.slug, "base": live_server.url}


def _check_operation(operation, target, mode: GenerationMode) -> list[str]:
    """Run one operation's generated cases; the failure messages (empty when all held)."""
    failures: list[str] = []
    path_parameters = {"slug": target["slug"]} if "{slug}" in operation.path else None
    strategy = operation.as_strategy(mode, path_parameters=path_parameters)

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case):
        response = case.call(base_url=target["base"], headers=target["headers"], timeout=30)
        try:
            case.validate_response(
                response,
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ],
            )
        except FailureGroup as group:
            for failure in group.exceptions:
                title = getattr(failure, "title", type(failure).__name__)
                failures.append(
                    f"{operation.label} ({mode.value}): {title}: {str(failure).strip()[:400]}"
                )
        elapsed = float(response.elapsed)  # seconds
        if elapsed >= MAX_RESPONSE_SECONDS:
            failures.append(f"{operation.label}: {elapsed:.1f} s")

    try:
        run()
    except Unsatisfiable:
        # Negative mode on an operation with nothing to make invalid (no parameters, no body).
        if mode is GenerationMode.POSITIVE:
            raise
    return failures


def test_every_operation_keeps_its_contract(fuzz_target):
    schema = fuzz_target["schema"]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 40  # the whole API, not a schema that lost its paths
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += _check_operation(operation, fuzz_target, mode)
    assert failures == [], "\n\n".join(dict.fromkeys(failures))
