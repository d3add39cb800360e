"""Property-based API test: schemathesis generates requests from ``/openapi.json`` for every operation.

For each operation it sends valid and invalid requests (bodies, query strings, path ids) as a
real admin of a tenant of its own, against the running stack, and asserts that the server never
answers 5xx and that every response matches the schema the operation documents (the error
envelope included). ``WELLPULSE_FUZZ_EXAMPLES`` raises the number of examples per operation.
"""

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from config import Settings
from serve.app import build_app
from tests.helpers import auth, create_tenant, new_tenant_id

EXAMPLES = int(os.environ.get("WELLPULSE_FUZZ_EXAMPLES", "8"))
# Operations that would end the fuzzing admin's own session or lock it out (MFA required for admins);
# each has its own tests in test_identity.py.
SELF_HARM = {
    ("POST", "/v1/auth/logout"),
    ("POST", "/v1/auth/password"),
    ("POST", "/v1/auth/mfa/setup"),
    ("POST", "/v1/auth/mfa/enable"),
    ("POST", "/v1/auth/mfa/disable"),
    ("PATCH", "/v1/tenant/settings"),
}


@pytest.fixture(scope="module")
async def fuzz_tenant(stack: Any) -> str:
    tenant = new_tenant_id("fuzz")
    await create_tenant(stack, tenant, [("PJ-1", "pump_jack"), ("CMP-1", "compressor")])
    return tenant


def _schema() -> Any:
    # The document the server serves, built offline so the operations are known at collection time.
    schema = schemathesis.openapi.from_dict(build_app(Settings()).openapi())
    for method, path in SELF_HARM:
        schema = schema.exclude(method=method, path=path)
    return schema


schema = _schema()


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_error_and_responses_match_their_schema(case: Any, fuzz_tenant: str, stack: Any) -> None:
    case.call_and_validate(
        base_url=stack.base_url, headers=auth(fuzz_tenant, "admin"), timeout=30,
        checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
    )
