"""The request mix of the load and soak tests: encode, decode, traverse and edit.

Images come from the procedural dSprites renderer (numpy only, no download), rendered
once into a pool at start so that the load generator spends its time on RPCs, not on
drawing. Requests are built against the server's own ModelInfo (image shape, latent
size, factor card), so the same mix works for any model.

Per call: Encode 4 images; Decode 4 latents; Traverse 1 image x 1 target x 8 steps;
EditAttributes 2 images with one factor edit. Weights 4 : 3 : 1 : 2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from latentdial.images import to_uint8
from latentdial.v1 import latentdial_pb2 as pb

#: RPC name -> relative weight in the mix.
TASK_WEIGHTS: dict[str, int] = {"Encode": 4, "Decode": 3, "Traverse": 1, "EditAttributes": 2}
ENCODE_BATCH = 4
DECODE_BATCH = 4
EDIT_BATCH = 2
TRAVERSE_STEPS = 8


def image_pool(num: int, shape_chw: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """(num, H, W, C) uint8 dSprites images resized to the model's channel count.

    The procedural dSprites renders (N, 1, 64, 64) floats; grey is repeated to 3 channels
    for colour models. Other sizes than 64x64 raise ValueError.
    """
    from latentdial.training.data import get_dataset

    c, h, w = shape_chw
    data = get_dataset("dsprites")
    obs = data.sample_observations(num, np.random.default_rng(seed))  # (N, 1, 64, 64)
    if obs.shape[2:] != (h, w):
        raise ValueError(f"the load test renders 64x64 dSprites; the model wants {h}x{w}")
    if obs.shape[1] != c:
        obs = np.repeat(obs[:, :1], c, axis=1)
    return np.ascontiguousarray(to_uint8(obs.transpose(0, 2, 3, 1)))


def tensor_u8(images: np.ndarray) -> pb.Tensor:
    """(N, H, W, C) uint8 -> Tensor."""
    return pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=list(images.shape), raw=images.tobytes())


def tensor_f32(x: np.ndarray) -> pb.Tensor:
    x = np.ascontiguousarray(x, dtype="<f4")
    return pb.Tensor(dtype=pb.DATA_TYPE_FLOAT32, shape=list(x.shape), raw=x.tobytes())


@dataclass
class Workload:
    """Builds the requests of the mix for one model."""

    info: pb.ModelInfo
    pool: np.ndarray  # (P, H, W, C) uint8

    @classmethod
    def for_model(cls, info: pb.ModelInfo, pool_size: int = 256, seed: int = 0) -> Workload:
        pool = image_pool(pool_size, (info.channels, info.height, info.width), seed)
        return cls(info=info, pool=pool)

    @property
    def ref(self) -> pb.ModelRef:
        return self.info.model

    def _images(self, n: int, rng: np.random.Generator) -> pb.ImageBatch:
        idx = rng.integers(0, len(self.pool), size=n)
        return pb.ImageBatch(tensor=tensor_u8(self.pool[idx]))

    def encode(self, rng: np.random.Generator) -> pb.EncodeRequest:
        return pb.EncodeRequest(model=self.ref, images=self._images(ENCODE_BATCH, rng))

    def decode(self, rng: np.random.Generator) -> pb.DecodeRequest:
        z = rng.standard_normal((DECODE_BATCH, self.info.latent_dim)).astype(np.float32)
        return pb.DecodeRequest(
            model=self.ref, latents=tensor_f32(z), output_format=pb.IMAGE_FORMAT_UINT8
        )

    def traverse(self, rng: np.random.Generator) -> pb.TraverseRequest:
        req = pb.TraverseRequest(
            model=self.ref, images=self._images(1, rng), steps=TRAVERSE_STEPS,
            output_format=pb.IMAGE_FORMAT_UINT8,
        )
        if self.info.factors:
            req.factors.append(self.info.factors[rng.integers(len(self.info.factors))].name)
        else:
            req.dimensions.append(int(rng.integers(self.info.latent_dim)))
        return req

    def _edit(self, rng: np.random.Generator) -> pb.FactorEdit:
        if not self.info.factors:
            return pb.FactorEdit(
                dimension=int(rng.integers(self.info.latent_dim)), set_value=float(rng.uniform(-2, 2))
            )
        f = self.info.factors[rng.integers(len(self.info.factors))]
        if f.kind == pb.FACTOR_KIND_CATEGORICAL and f.labels:
            return pb.FactorEdit(factor=f.name, set_label=f.labels[rng.integers(len(f.labels))])
        if f.kind == pb.FACTOR_KIND_CIRCULAR:
            return pb.FactorEdit(factor=f.name, shift=float(rng.uniform(-1, 1)))
        return pb.FactorEdit(factor=f.name, set_value=float(rng.uniform(f.min_value, f.max_value)))

    def edit(self, rng: np.random.Generator) -> pb.EditAttributesRequest:
        return pb.EditAttributesRequest(
            model=self.ref, images=self._images(EDIT_BATCH, rng), edits=[self._edit(rng)],
            output_format=pb.IMAGE_FORMAT_UINT8,
        )

    def builders(self) -> dict[str, Callable[[np.random.Generator], object]]:
        """RPC name -> request builder, for every RPC of :data:`TASK_WEIGHTS`."""
        return {
            "Encode": self.encode, "Decode": self.decode,
            "Traverse": self.traverse, "EditAttributes": self.edit,
        }


def pick_task(rng: np.random.Generator) -> str:
    """One RPC name drawn with :data:`TASK_WEIGHTS`."""
    names = list(TASK_WEIGHTS)
    p = np.array([TASK_WEIGHTS[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying a bearer token, or nothing."""
    return (("authorization", f"Bearer {token}"),) if token else ()
