"""The HTTP front door: FastAPI on uvicorn, on its own port, in the gRPC server's event loop.

One module per job: :mod:`.app` (the door: app, lifecycle, error handlers), :mod:`.call` (one
request's frame: token, deadline, :meth:`Engine.call`, the body read as a stream under its limits),
:mod:`.errors` (the core's error kinds as HTTP statuses), :mod:`.bodies` (the JSON bodies and
their OpenAPI schemas), :mod:`.media` (PNG answers), and the routes: :mod:`.rest_v1` (REST mirrors
of the v1 calls), :mod:`.oip_rest` (the Open Inference Protocol's REST binding), :mod:`.page` (the
slider page, ``/docs``, ``/openapi.json``) and :mod:`.ops` (``/metrics``, ``/healthz``). A route
module imports no other route module. Routes: docs/api.md#http-api.
"""
