"""The slider page (``/``), Swagger UI (``/docs``, served from the swagger-ui-bundle package, no CDN)
and the OpenAPI document (``/openapi.json``, with the JSON bodies' schemas of :mod:`.bodies`)."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from latentdial.serving.errors import NotFound
from latentdial.serving.http.bodies import BODIES


def _swagger_dir() -> str:
    """Swagger UI's files from the swagger-ui-bundle package, served locally (no CDN)."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError as e:  # the serve extra installs it
        raise NotFound("swagger-ui-bundle is not installed; pip install 'latentdial[serve]'") from e
    return str(swagger_ui_path)


def add_routes(app: FastAPI) -> None:
    """``/``, ``/docs``, their static files, and the OpenAPI document."""
    web = resources.files("latentdial.serving") / "web"
    app.mount("/static/swagger", StaticFiles(directory=_swagger_dir()), name="swagger")
    app.mount("/static/page", StaticFiles(directory=str(web)), name="page")

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((web / "index.html").read_text())

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="latentdial API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
        )

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in BODIES:
                doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(doc.pop("$defs", {}))
                components[model.__name__] = doc
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
