"""Core errors name a kind, never a transport; each door maps every kind onto its own status."""

from __future__ import annotations

import json

import grpc
import pytest

from latentdial.serving import errors
from latentdial.serving.errors import ErrorKind
from latentdial.serving.grpc_call import STATUS_CODES, status_code
from latentdial.serving.http.errors import (
    HTTP_STATUSES,
    UnsupportedMediaType,
    error_response,
    http_status,
)

ERRORS = [errors.InvalidArgument, errors.NotFound, errors.FailedPrecondition, errors.ResourceExhausted,
          errors.Unauthenticated, errors.DeadlineExceeded, errors.Unavailable, errors.Internal]


def test_every_kind_has_a_grpc_status_of_the_same_name_and_an_http_status():
    assert set(STATUS_CODES) == set(ErrorKind) == set(HTTP_STATUSES)
    for kind, code in STATUS_CODES.items():
        assert code.name == kind.name


@pytest.mark.parametrize(
    ("cls", "grpc_code", "http"),
    [
        (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT, 400),
        (errors.NotFound, grpc.StatusCode.NOT_FOUND, 404),
        (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION, 400),
        (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED, 401),
        (errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (errors.Unavailable, grpc.StatusCode.UNAVAILABLE, 503),
        (errors.Internal, grpc.StatusCode.INTERNAL, 500),
        (errors.PayloadTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
        (errors.Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (UnsupportedMediaType, grpc.StatusCode.INVALID_ARGUMENT, 415),
    ],
)
def test_each_error_maps_to_its_grpc_code_and_http_status(cls, grpc_code, http):
    e = cls("what to fix")
    assert status_code(e) is grpc_code and http_status(e) == http
    assert e.message == "what to fix" and e.kind.name == grpc_code.name


def test_an_http_error_body_says_what_to_fix_its_kind_and_the_request_id():
    r = error_response(errors.NotFound("model 'x' is not served"), "req-1")
    assert r.status_code == 404 and r.headers["x-request-id"] == "req-1"
    assert json.loads(r.body) == {"error": "model 'x' is not served", "code": "NOT_FOUND", "request_id": "req-1"}


def test_a_client_told_to_back_off_is_told_when_and_one_without_a_token_how():
    assert error_response(errors.Overloaded("busy"), "r").headers["retry-after"] == "1"
    assert error_response(errors.ResourceExhausted("queue full"), "r").headers["retry-after"] == "1"
    assert error_response(errors.Unauthenticated("token"), "r").headers["www-authenticate"] == "Bearer"
    assert "retry-after" not in error_response(errors.PayloadTooLarge("big"), "r").headers


def test_the_core_errors_carry_no_transport():
    for cls in ERRORS:
        assert not any(isinstance(v, grpc.StatusCode) for v in vars(cls).values())
        assert not hasattr(cls, "http_status") and not hasattr(cls, "code")
