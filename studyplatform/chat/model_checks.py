"""Test messages to a study's models before launch ("Test models" in the console, and the demo
seeding): each arm's registered endpoint is asked for one short reply, and the result is recorded
for the launch checklist (studyplatform/studies/launch.py).

What a researcher is told is generic (the endpoint name and at most an HTTP status); the
exception text, which can carry hosts, addresses and ports, goes only to the audit log and the
server log, so the button cannot be used to scan the server's network.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from django.utils.translation import gettext as _

from studyplatform.core.model_endpoints import EndpointUnavailable
from studyplatform.studies.launch import model_check_record
from studyplatform.studies.models import Arm, Study

from .providers import ProviderError, get_provider
from .services import arm_endpoint

logger = logging.getLogger(__name__)

MODEL_CHECK_TIMEOUT_S = 30


@dataclass(frozen=True)
class ModelTestResult:
    arm: Arm
    error: str  # researcher-facing; empty when the model replied

    @property
    def ok(self) -> bool:
        return not self.error


async def _check_model(provider, model: str) -> str:
    try:
        return await asyncio.wait_for(provider.check(model), MODEL_CHECK_TIMEOUT_S)
    finally:
        # The provider's pooled client belongs to this short-lived event loop.
        await provider.aclose()


def _test_failure(endpoint: str, exc: BaseException) -> str:
    """What a researcher is told when a test fails: the endpoint and at most an HTTP status."""
    if isinstance(exc, EndpointUnavailable):
        return str(exc)  # written for researchers: names the endpoint and model only
    if isinstance(exc, ProviderError) and exc.status:
        return _("endpoint %(name)s refused the test: HTTP %(status)d") % {
            "name": endpoint,
            "status": exc.status,
        }
    return _("endpoint %(name)s did not answer") % {"name": endpoint}


def study_models_test(*, study: Study, actor) -> list[ModelTestResult]:
    """Send a test message to every active arm's model (registered endpoints only) and record
    each result as a launch check (an audit event)."""
    results = []
    for arm in study.arms.filter(is_active=True):
        error = detail = ""
        try:
            endpoint = arm_endpoint(arm)
            provider = get_provider(endpoint.kind, endpoint.provider_config())
            asyncio.run(_check_model(provider, arm.model_name))
        except (EndpointUnavailable, ProviderError, TimeoutError, ValueError, OSError) as exc:
            error = _test_failure(arm.endpoint, exc)
            detail = f"{type(exc).__name__}: {exc}"[:1000]
            logger.warning("model test for %s/%s failed: %s", study.slug, arm.key, detail)
        model_check_record(
            study=study, arm=arm, ok=not error, error=error, detail=detail, actor=actor
        )
        results.append(ModelTestResult(arm=arm, error=error))
    return results
