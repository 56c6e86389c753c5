"""Structured server logs: text or one JSON object per line, each tagged with the request id."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

#: The id of the RPC being handled (from the caller's ``x-request-id`` metadata or generated).
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "request_id", "message"[, "exc"]} per line."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def configure_logging(fmt: str = "text", level: int = logging.INFO) -> None:
    """Install one stderr handler on the root logger in ``fmt`` ("text" or "json")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_latentdial", False):
            root.removeHandler(h)
    handler._latentdial = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
