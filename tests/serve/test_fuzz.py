"""Schemathesis against the node's own /openapi.json on a real server: no input it generates
from the spec (bounded examples per operation) may get a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from serve_models import AUTH, make_repository, wait_ready


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory):
    """A node of its own: the fuzzer loads and unloads models at random."""
    from edgeinfer.serve.app import create_app
    from edgeinfer.serve.config import NodeConfig
    from edgeinfer.serve.server import BackgroundServer

    repo = make_repository(tmp_path_factory.mktemp("fuzz") / "repo")
    config = NodeConfig(repository=repo, token=AUTH["Authorization"].split()[1],
                        max_body_bytes=64 * 1024, queue_size=4)
    with BackgroundServer(create_app(config)) as srv:
        wait_ready(srv.url)
        yield srv


@pytest.mark.slow
def test_no_server_errors(fuzz_server) -> None:
    """Every operation of the spec, generated bodies, paths, queries and headers included."""
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    seen: dict[str, set[int]] = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            response = case.call(base_url=fuzz_server.url, headers=AUTH, timeout=30)
            seen.setdefault(case.operation.label, set()).add(response.status_code)
            assert response.status_code < 500, (
                case.method, case.formatted_path, response.status_code, response.text[:300])
            if response.status_code >= 400 and "json" in response.headers.get(
                    "content-type", ""):
                assert "error" in response.json()

        check()
    assert set(seen) == {op.label for op in operations}
    infer = next(codes for label, codes in seen.items() if label.endswith("/infer"))
    assert infer & {400, 404, 422}  # the fuzzer did reach the error paths
