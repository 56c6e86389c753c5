"""The JSON bodies of the HTTP routes: their validation and their OpenAPI schemas.

These describe the wire, like the proto's messages; an edit or pin is the SDK's own
:class:`latentdial.edit.Edit` / :class:`~latentdial.edit.Pin`, read by pydantic; the routes turn them into the core's typed
requests (:mod:`latentdial.serving.requests`). List lengths are bounded here (``max_length``) so an
oversized list is refused while it is parsed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from latentdial.edit import Edit, Pin
from latentdial.serving import oip
from latentdial.serving.requests import MAX_SEED
from latentdial.v1 import MAX_EDITS, MAX_TRAVERSE_TARGETS


def seed_field() -> Any:
    """A seed as the schema says it: the proto's uint64 (checked again by the core's requests)."""
    return Field(0, ge=0, le=MAX_SEED, description="0..2**64 - 1; the same seed draws the same numbers")


class SourceBody(BaseModel):
    """Images or latents. Give one of ``images`` (base64 PNGs), ``pixels`` or ``latents``."""

    images: list[str] | None = Field(None, description="base64-encoded PNGs, one per image")
    pixels: list | None = Field(None, description="(N, H, W, C) nested lists, uint8 or float32 in [0, 1]")
    dtype: Literal["uint8", "float32"] = Field("float32", description="the type of `pixels`")
    latents: list[list[float]] | None = Field(None, description="(N, D) latents")


class EncodeBody(SourceBody):
    sample: bool = Field(False, description="also draw z = mean + exp(log_var / 2) * eps")
    seed: int = seed_field()


class DecodeBody(BaseModel):
    latents: list[list[float]] = Field(description="(N, D) latents")


class ReconstructBody(EncodeBody):
    pass


class TraverseBody(SourceBody):
    dimensions: list[int] = Field(default_factory=list, description="latent dimensions to sweep",
                                  max_length=MAX_TRAVERSE_TARGETS)
    factors: list[str] = Field(default_factory=list, description="named factors to sweep",
                               max_length=MAX_TRAVERSE_TARGETS)
    start: float | None = None
    stop: float | None = None
    steps: int = Field(10, description="2..64")


class EditBody(SourceBody):
    edits: list[Edit] = Field(default_factory=list, description="applied in order", max_length=MAX_EDITS)


class GenerateBody(BaseModel):
    count: int = 1
    seed: int = seed_field()
    temperature: float = 1.0
    pins: list[Pin] = Field(default_factory=list, max_length=MAX_EDITS)


class InferInputIn(BaseModel):
    name: str
    shape: list[int] = Field(max_length=8)
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: list | None = None


class InferOutputIn(BaseModel):
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferBody(BaseModel):
    """An OIP v2 inference request (the JSON part when the binary extension is used)."""

    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[InferInputIn] = Field(max_length=oip.MAX_TENSORS)
    outputs: list[InferOutputIn] | None = Field(None, max_length=oip.MAX_TENSORS)


#: every body with a schema in the OpenAPI document
BODIES = (EncodeBody, DecodeBody, ReconstructBody, TraverseBody, EditBody, GenerateBody, InferBody)
