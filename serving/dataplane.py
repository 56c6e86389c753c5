"""The data plane: every domain call of every front door, from a typed request to a typed result.

After KServe's protocol-neutral DataPlane. A door resolves the model with :meth:`DataPlane.served`,
reads its wire format into a request of :mod:`requests` and calls one method here inside
:meth:`Engine.call` (request id, metrics, readiness, the cap on requests in flight, the deadline).
Each method checks every limit and compiles every edit or sweep before any compute is spent
(nothing is encoded or decoded for a request that will be refused), then runs the graphs through
the engine's batchers under the request's deadline (:func:`current_deadline`). No door repeats a
check, and none passes a deadline: the engine set it once for the request.

Shapes: images (N, C, H, W) float32 in [0, 1], latents (N, D) float32.
"""

from __future__ import annotations

import asyncio
import functools

import numpy as np

from latentdial.serving.edits import (
    compile_edits,
    generate_latents,
    plan_traversal,
    sample_posterior,
)
from latentdial.serving.engine import Engine, ServedModel, current_deadline
from latentdial.serving.errors import FailedPrecondition, InvalidArgument
from latentdial.serving.requests import (
    EditRequest,
    EncodeRequest,
    GenerateRequest,
    ModelRef,
    ReconstructRequest,
    SamplesRequest,
    Source,
    TraverseRequest,
)
from latentdial.serving.results import (
    Decoded,
    EncodeResult,
    ModelInfo,
    ModelSummary,
    Samples,
    TraversalResult,
    model_info,
    model_summaries,
    ref_of,
)


class DataPlane:
    """The domain calls over one :class:`Engine`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ---------------------------------------------------------------- models
    def served(self, ref: ModelRef, call: str | None = None) -> ServedModel:
        """Resolve (and, inside a request, hold) a model version; NotFound lists what exists. With
        ``call`` (a v1 call's name, or "Samples"), FailedPrecondition when the model's kind does not
        serve it (an editor has no latent space), before the door reads anything of the request."""
        s = self.engine.served(ref.name, ref.version)
        return s if call is None else s.serves(call)

    def list_models(self) -> list[ModelSummary]:
        return model_summaries(self.engine)

    def model_info(self, ref: ModelRef) -> ModelInfo:
        return model_info(self.engine, self.served(ref))

    def _count(self, count: int) -> int:
        limit = self.engine.max_request_items
        if not 1 <= count <= limit:
            raise InvalidArgument(f"count={count} is outside 1..{limit} (max_request_items)")
        return count

    # ---------------------------------------------------------- domain calls
    async def encode(self, s: ServedModel, r: EncodeRequest) -> EncodeResult:
        """images -> posterior mean, log_var (N, D); a seeded sample and each factor's value when asked."""
        s.serves("Encode")
        mean, log_var = await self.engine.encode(s, r.images, current_deadline())
        sample = sample_posterior(mean, log_var, r.seed) if r.sample else None
        return EncodeResult(ref_of(s), mean, log_var, sample, factor_values(s, mean) if r.factor_values else {})

    async def decode(self, s: ServedModel, latents: np.ndarray) -> Decoded:
        """latents (N, D) -> images."""
        s.serves("Decode")
        return Decoded(ref_of(s), latents, await self.engine.decode(s, latents, current_deadline()))

    async def reconstruct(self, s: ServedModel, r: ReconstructRequest) -> Decoded:
        """Encode, take the mean (or a seeded posterior sample), decode."""
        s.serves("Reconstruct")
        mean, log_var = await self.engine.encode(s, r.images, current_deadline())
        return await self.decode(s, sample_posterior(mean, log_var, r.seed) if r.sample else mean)

    async def _latents(self, s: ServedModel, source: Source) -> np.ndarray:
        if source.images is not None:
            return (await self.engine.encode(s, source.images, current_deadline()))[0]
        if source.latents is not None:
            return source.latents
        raise InvalidArgument("no source; set images or latents")

    async def traverse(self, s: ServedModel, r: TraverseRequest) -> TraversalResult:
        """Sweep dimensions or named factors from each source; the grid order is (n*T + t)*S + s."""
        s.serves("Traverse")
        sources = r.source.rows  # no source: refused before anything else
        plan = plan_traversal(s.model.latent_dim, dims=r.dims, factors=r.factors, start=r.start, stop=r.stop,
                              steps=r.steps, card=s.model.card)
        total = sources * len(plan.targets) * r.steps
        limit = self.engine.max_request_items
        if total > limit:
            raise InvalidArgument(
                f"the grid has {sources} sources x {len(plan.targets)} targets x {r.steps} steps = {total} "
                f"images, more than max_request_items={limit}; sweep fewer"
            )
        base = await self._latents(s, r.source)
        images = await self.engine.decode(s, plan.grid(base), current_deadline())
        return TraversalResult(ref_of(s), images, len(base), r.steps, plan)

    async def edit(self, s: ServedModel, r: EditRequest) -> Decoded:
        """Compile the edits against the model, then apply them once to the source's latents and decode.

        An editor (``kind`` "editor") has codes where a VAE has latents: codes = classifier(images),
        the same compiled edits applied to them, images' = editor(images, codes'); ``Decoded.latents``
        holds the target codes codes' (N, D). Its source must be images.
        """
        s.serves("EditAttributes")
        r.source.rows  # noqa: B018 - no source: refused before the edits are compiled
        edits = compile_edits(r.edits, s.model.card, s.model.latent_dim)
        if s.kind == "editor":
            if r.source.images is None:
                raise FailedPrecondition(
                    f"model {s.name}/{s.version} is an editor (image-to-image translation): it has no latent "
                    "space, so EditAttributes takes images, not latents"
                )
            deadline = current_deadline()
            codes = edits.apply(await self.engine.classify(s, r.source.images, deadline))
            return Decoded(ref_of(s), codes, await self.engine.translate(s, r.source.images, codes, deadline))
        return await self.decode(s, edits.apply(await self._latents(s, r.source)))

    async def generate(self, s: ServedModel, r: GenerateRequest) -> Decoded:
        """Seeded prior samples (count, D) with the pins applied, decoded."""
        s.serves("Generate")
        count = self._count(r.count)
        pins = compile_edits(r.pins, s.model.card, s.model.latent_dim, "pins")
        z = generate_latents(count, s.model.latent_dim, seed=r.seed, temperature=r.temperature, pins=pins)
        return await self.decode(s, z)

    async def samples(self, s: ServedModel, r: SamplesRequest) -> Samples:
        """``count`` images from the model's own ground-truth dataset.

        The dataset is the one named in the manifest's provenance. Procedural datasets are pure
        numpy (``training/data/``), imported here lazily and never pulling torch; a dataset that
        needs files this server does not have is FailedPrecondition.
        """
        s.serves("Samples")
        count = self._count(r.count)
        name = _dataset_name(s.model.manifest.provenance)
        if not name:
            raise FailedPrecondition(f"{s.name}/{s.version}: the manifest names no training dataset to sample")
        sampler = _GROUND_TRUTH.get(name)
        if sampler is None:
            try:
                from latentdial.training.data import get_dataset  # numpy only; no torch

                sampler = _GROUND_TRUTH[name] = get_dataset(name)
            except Exception as e:  # noqa: BLE001 - any failure means: cannot sample here
                raise FailedPrecondition(
                    f"{s.name}/{s.version}: its dataset {name!r} cannot be sampled on this server ({e}); "
                    "upload an image instead"
                ) from e
        # the loop's default pool: the runtime threads are for graphs only
        x = await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(sampler.sample_observations, count, np.random.default_rng(r.seed))
        )
        x = np.asarray(x, np.float32)
        if x.shape[1:] != tuple(s.model.image_shape):
            raise FailedPrecondition(
                f"{s.name}/{s.version}: dataset {name!r} draws {list(x.shape[1:])} images but the model "
                f"takes {list(s.model.image_shape)}; upload an image instead"
            )
        return Samples(ref_of(s), x)


def factor_values(s: ServedModel, z: np.ndarray) -> dict[str, list[float]]:
    """Each named factor's value in every row of latents z (N, D), in factor units.

    Calibrated factors read the nearest calibration-table entry; hand-named ones report
    their first dimension's latent value.
    """
    card = s.model.card
    if card is None:
        return {}
    out = {}
    for f in card.factors:
        v = f.value_from_latents(z) if f.calibrated else np.asarray(z)[:, f.dims[0]]
        out[f.name] = [float(x) for x in v]
    return out


#: dataset name -> dataset object, built once per process
_GROUND_TRUTH: dict[str, object] = {}


def _dataset_name(provenance: dict) -> str | None:
    d = provenance.get("dataset")
    if isinstance(d, dict):
        d = d.get("name")
    return d if isinstance(d, str) and d else None
