"""Schemathesis against the served OpenAPI document of a real server on a real port.

Every operation of ``/openapi.json`` gets requests that fit its schema and requests that do not
(Schemathesis' positive and negative modes); then its stateful mode chains operations through
OpenAPI links (list -> generate -> decode / edit / traverse with the returned latents, encode ->
decode / edit / traverse, decode -> encode with the returned PNGs, list -> info -> OIP by the
returned names), besides the links Schemathesis infers itself. The bar: no answer is a 5xx, and
the server process lives on with its memory bounded.

The links are added here to the document the server serves (its responses declare no schemas,
so Schemathesis could infer none): they name operations by method and path, not by FastAPI's
generated operation ids.
"""

from __future__ import annotations

import time

import httpx
import pytest
import schemathesis
from fixtures.attack import RssWatch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

pytestmark = pytest.mark.integration

#: Examples per operation and variant (:func:`variants`): about 600 requests in all (Hypothesis stops early where it runs out of distinct ones).
EXAMPLES = 15
#: Scenarios of the stateful run, of up to 10 steps each. Derandomized, so each run draws the same ones;
#: 40 were seen, once in a full-suite run, to start no chain from a link's source (only Schemathesis'
#: own guessed links, all 404), so the budget leaves room: about 300 linked steps in 10-15 s.
STATEFUL_EXAMPLES = 100
#: The most the server's resident set may rise while fuzzed; its answers are small and it holds no
#: state between requests, so anything more is a leak or an unbounded allocation.
MAX_RSS_GROWTH_MIB = 64.0

#: (source method, source path, target method, target path, link): ``$response.body`` of the source's
#: 200 answer fed into the target's request.
LINKS = [
    ("post", "/v1/models/{model}/encode", "post", "/v1/models/{model}/decode",
     {"requestBody": {"latents": "$response.body#/mean"}}),
    ("post", "/v1/models/{model}/encode", "post", "/v1/models/{model}/edit",
     {"requestBody": {"latents": "$response.body#/mean"}}),
    ("post", "/v1/models/{model}/encode", "post", "/v1/models/{model}/traverse",
     {"requestBody": {"latents": "$response.body#/mean"}}),
    ("post", "/v1/models/{model}/edit", "post", "/v1/models/{model}/decode",
     {"requestBody": {"latents": "$response.body#/latents"}}),
    ("post", "/v1/models/{model}/generate", "post", "/v1/models/{model}/decode",
     {"requestBody": {"latents": "$response.body#/latents"}}),
    ("post", "/v1/models/{model}/generate", "post", "/v1/models/{model}/edit",
     {"requestBody": {"latents": "$response.body#/latents"}}),
    ("post", "/v1/models/{model}/generate", "post", "/v1/models/{model}/traverse",
     {"requestBody": {"latents": "$response.body#/latents"}}),
    # the list is sorted by name: models/0 is the editor ("ed", no latent space, so it generates
    # nothing), models/1 the toy VAE, whose generated latents start the chains above
    ("get", "/v1/models", "post", "/v1/models/{model}/generate",
     {"parameters": {"path.model": "$response.body#/models/1/name"},
      "requestBody": {"count": 2, "seed": 0, "temperature": 1.0, "pins": []}}),
    ("post", "/v1/models/{model}/decode", "post", "/v1/models/{model}/encode",
     {"requestBody": {"images": "$response.body#/images"}}),
    ("get", "/v1/models", "get", "/v1/models/{model}", {"parameters": {"path.model": "$response.body#/models/0/name"}}),
    ("get", "/v1/models/{model}", "get", "/v2/models/{model}",
     {"parameters": {"path.model": "$response.body#/oip_models/0"}}),
    ("get", "/v1/models/{model}", "post", "/v2/models/{model}/infer",
     {"parameters": {"path.model": "$response.body#/oip_models/1"}}),
]


def with_links(doc: dict) -> dict:
    """``doc`` with :data:`LINKS` on the sources' 200 answers; the path's model carries over, and the
    served version is asked for (a drawn one is all but never served)."""
    for src_method, src_path, dst_method, dst_path, link in LINKS:
        source, target = doc["paths"][src_path][src_method], doc["paths"][dst_path][dst_method]
        link = {"operationId": target["operationId"], **link}
        if "{model}" in src_path and "{model}" in dst_path:
            link.setdefault("parameters", {"path.model": "$request.path.model"})
        if "{model}" in dst_path:
            link["parameters"] = {**link.get("parameters", {}), "query.version": "1"}
        links = source["responses"]["200"].setdefault("links", {})
        links[f"{dst_method}_{dst_path.replace('/', '_')}"] = link
    return doc


def variants(op) -> list[tuple[str, schemathesis.GenerationMode, dict | None]]:
    """How an operation is fuzzed: (name, mode, fixed path parameters). Requests that fit the schema
    with any path ("positive"), and with the served model's path ("served", so that they get past
    NOT_FOUND to the handler); requests that break the schema ("negative")."""
    positive, negative = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
    out = [("positive", positive, None), ("negative", negative, None)]
    if "{model}" in op.path:
        path = {"model": "toy.decoder" if op.path.startswith("/v2/") else "toy"}
        if "{version}" in op.path:
            path["version"] = "1"
        out.insert(1, ("served", positive, path))
    return out


def assert_no_server_error(response, case) -> None:
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} answered {response.status_code}: {response.text[:300]}"
    )


def fuzz(op, variant: str, mode: schemathesis.GenerationMode, path: dict | None) -> list[int]:
    """:data:`EXAMPLES` requests to ``op``; the statuses they got (each checked)."""
    statuses: list[int] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode, path_parameters=path))
    def run(case):
        response = case.call(timeout=30)
        statuses.append(response.status_code)
        assert_no_server_error(response, case)

    try:
        run()
    except Unsatisfiable:
        # no request breaks the schema of an operation without a body or typed parameters
        assert variant == "negative" and op.method == "get", op.label
    return statuses


@pytest.fixture
def schema(served):
    """The served document with :data:`LINKS`, loaded afresh for each test: nothing one test's runs
    left on a loaded schema reaches the next."""
    doc = httpx.get(f"{served.http_url}/openapi.json", timeout=10).json()
    loaded = schemathesis.openapi.from_dict(with_links(doc))
    loaded.config.update(base_url=served.http_url)
    return loaded


def test_every_operation_answers_fuzzed_requests_without_a_server_error(served, schema):
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 19, [op.label for op in operations]
    sent = {}
    t0 = time.monotonic()
    with RssWatch(served.pid) as rss:
        for op in operations:
            for variant, mode, path in variants(op):
                sent[(op.label, variant)] = fuzz(op, variant, mode, path)
    print(f"\nSchemathesis: {sum(map(len, sent.values()))} requests over {len(operations)} operations in "
          f"{time.monotonic() - t0:.1f} s; {rss}")
    served.assert_alive()
    # every operation was reached, POSTs with bodies that break their schema too
    assert all(sent[(op.label, "positive")] for op in operations)
    assert all(sent[(op.label, "negative")] for op in operations if op.method == "post")
    # on the served model's path, requests got past the lookup to the handlers' own checks
    lookup_only = [label for (label, variant), codes in sent.items() if variant == "served" and set(codes) <= {404}]
    assert not lookup_only, lookup_only
    assert 200 in sent[("POST /v1/models/{model}/generate", "served")]
    assert rss.growth < MAX_RSS_GROWTH_MIB, str(rss)


def test_stateful_chains_follow_the_links_without_a_server_error(served, schema):
    followed = []

    class Chains(schema.as_state_machine()):
        def step(self, input):
            output = super().step(input)
            if input.transition is not None:
                followed.append((input.transition.id, output.response.status_code))
            return output

        def get_call_kwargs(self, case):
            return {"timeout": 30}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            assert_no_server_error(response, case)

    t0 = time.monotonic()
    with RssWatch(served.pid) as rss:
        Chains.run(settings=settings(max_examples=STATEFUL_EXAMPLES, stateful_step_count=10, deadline=None,
                                     database=None, derandomize=True, suppress_health_check=list(HealthCheck)))
    links = {link for link, _ in followed}
    answered = {link for link, status in followed if status == 200}
    print(f"\nSchemathesis stateful: {len(followed)} linked steps in {time.monotonic() - t0:.1f} s "
          f"({len(links)} distinct links; answered 200 at least once: {sorted(answered)}); {rss}")
    served.assert_alive()
    # the chains did follow the links, and a value one answer returned (a model's name; in most runs
    # also generated latents) made the next request one the server answered 200
    assert len(links) >= 3 and answered, followed
    assert rss.growth < MAX_RSS_GROWTH_MIB, str(rss)
