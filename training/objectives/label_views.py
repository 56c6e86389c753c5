"""Label-aware views: more labelled images from the few there are, by moves whose effect on each
factor the user declares.

A labelled image moved within its frame, turned by a quarter turn or mirrored is still an image
of the same world, and some of its labels survive the move: a sprite shifted across the frame
keeps its shape, size and orientation; turned or mirrored it keeps its shape and size. Each view
keeps the labels of the factors every move it took keeps and marks the others unknown (-1), so
the supervised loss sees them on no more than it can trust. This is the data augmentation of
supervised training (Krizhevsky et al. 2012, "ImageNet Classification with Deep Convolutional
Neural Networks": translations and reflections), made label-aware per factor, and the reason it
matters with few labels is the one of semi-supervised learning (Sohn et al. 2020, "FixMatch",
flips and translations on the labelled batch): a conv encoder trained on 1,000 dSprites images
alone reads the shape of new images near chance (0.42 of three shapes after 3,000 steps), and
with views of the same 1,000 images 0.97 (``scripts/encoder_ceiling.py``; docs/models.md, "Few
labels").

The moves, each drawn per image (``views`` in the objective's config: move -> factors it keeps):

- ``shift``: an integer translation drawn uniformly among those that keep the whole foreground
  in the frame (the foreground: pixels where some channel differs from that channel's median,
  the background, by more than :data:`FOREGROUND`, so darker parts count as well as lighter
  ones, e.g. the black half of an Infinite dSprites shape on its grey ground); the uncovered
  border takes the background. For objects on a plain background: a photograph's edge is not
  background.
- ``rot90``: a quarter turn k in {0, 1, 2, 3} (square images only).
- ``flip``: a left-right mirror, with probability 1/2.

One circular factor may turn with the image (``views_angle``): a quarter turn adds 90 degrees to
its angle and a mirror negates it, so its label is kept through both as an angle rather than
forgotten. That holds when the factor's period is one full turn of the image, its angle grows
in ``torch.rot90``'s sense (counter-clockwise as displayed) and every object at angle 0 is its
own mirror image; dSprites' orientation is such a factor (checked against its renderer in the
tests). The view then reports each image's new angle of that factor in radians.

The two factors that place the object may move with the image too (``views_position``: the
factor for x, growing rightwards, then the one for y, growing downwards): each grid step one
pixel, the grid of K offsets centred in the frame, as dSprites' pos_x and pos_y are (each
position step is one pixel; the sprite's box at offset i of 32 spans pixels i to i + 32 of 64).
A quarter turn then takes (x, y) to (y, K - 1 - x), a mirror x to K - 1 - x and a shift by
(dx, dy) pixels to (x + dx, y + dy); the shift is drawn so that a known place stays on its grid.
Their labels are kept through every move, again checked against the renderer.

A move that leaves the image as it was (k = 0, no mirror, a zero shift) keeps every label.
Everything is batched tensor work with no host sync, so a CUDA graph can capture it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

#: The moves a view may take, in the order they are applied.
MOVES = ("rot90", "flip", "shift")
#: A pixel is foreground when some channel differs from that channel's background by more than this
#: (the distance the generic reader's ``reader.generic.foreground`` maps; measured here beside the
#: background colour the shift fills with, so that objectives need not import the reader).
FOREGROUND = 0.25


def check_views(views: Mapping[str, Sequence[str]], factor_names: Sequence[str] | None = None) -> None:
    """Raise ValueError unless ``views`` maps moves of :data:`MOVES` to lists of factor names, each
    one of ``factor_names`` (not checked when None: the dataset is not known yet)."""
    if not isinstance(views, Mapping):
        raise ValueError(f"objective.views must be a table of move = [factor names], got {views!r}")
    unknown = [m for m in views if m not in MOVES]
    if unknown:
        raise ValueError(f"objective.views: unknown move(s) {unknown}; the moves are {list(MOVES)}")
    for move, kept in views.items():
        if isinstance(kept, str) or not all(isinstance(k, str) for k in kept):
            raise ValueError(f"objective.views.{move} must be a list of factor names, got {kept!r}")
        strangers = [k for k in kept if factor_names is not None and k not in factor_names]
        if strangers:
            raise ValueError(f"objective.views.{move} keeps {strangers}, which are not factors of the dataset: "
                             f"{list(factor_names)}")


class LabelViews:
    """Draws one view of each labelled image (module docstring).

    views: move -> the names of the factors it keeps; factor_names: the label columns' names;
    angle: the circular factor that turns with the image (module docstring), or None;
    position: the x and y factors that place the object (module docstring), or (); sizes: each
    factor's grid size (needed with ``position``).
    """

    def __init__(self, views: Mapping[str, Sequence[str]], factor_names: Sequence[str],
                 angle: str | None = None, position: Sequence[str] = (), sizes: Sequence[int] = ()) -> None:
        check_views(views, factor_names)
        names = list(factor_names)
        if angle is not None and angle not in names:
            raise ValueError(f"objective.views_angle {angle!r} is not a factor of the dataset: {names}")
        self.position: tuple[int, int] | None = None
        if position:
            if len(position) != 2 or any(p not in names for p in position) or position[0] == position[1]:
                raise ValueError(f"objective.views_position must name two factors of the dataset, x then y: "
                                 f"{list(position)} of {names}")
            self.position = (names.index(position[0]), names.index(position[1]))
            self.grid = int(sizes[self.position[0]])
            if "rot90" in views and int(sizes[self.position[1]]) != self.grid:
                raise ValueError(f"views.rot90 with views_position needs as many x as y positions, got "
                                 f"{sizes[self.position[0]]} and {sizes[self.position[1]]}")
        self.moves = tuple(m for m in MOVES if m in views)
        self.angle = angle
        turned = {"rot90", "flip"}
        placing = set(position)
        #: per move, (F,) bool: does the move keep the label of that column (as it is, or moved with the image)?
        self._keeps = {m: torch.tensor([n in views[m] or n in placing or (n == angle and m in turned) for n in names])
                       for m in self.moves}
        self._on: dict[tuple[str, torch.device], torch.Tensor] = {}

    def _keep(self, move: str, device: torch.device) -> torch.Tensor:
        """(F,) bool on ``device``, copied there once (a CUDA graph may not copy host data)."""
        key = (move, device)
        if key not in self._on:
            self._on[key] = self._keeps[move].to(device)
        return self._on[key]

    def __call__(self, images: torch.Tensor, labels: torch.Tensor,
                 angles: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """A view of each image, its labels and its angle.

        images: (M, C, H, W) in [0, 1]; labels: (M, F) int64, -1 unknown; angles: (M,) radians, the
        ``angle`` factor's angle of each image (None without one). Returns (views (M, C, H, W),
        labels (M, F), the views' angles (M,) or None).
        """
        x, y, a = images, labels, angles
        m = x.shape[0]
        if self.angle is not None and a is None:
            raise ValueError(f"views turning {self.angle!r} need each image's angle")
        if self.position is not None:  # an object's place is known only with both its coordinates
            known = (y[:, self.position[0]] >= 0) & (y[:, self.position[1]] >= 0)
            y = self._place(y, torch.where(known, y[:, self.position[0]], -1), torch.where(known, y[:, self.position[1]], -1))
        if "rot90" in self.moves:
            if x.shape[-1] != x.shape[-2]:
                raise ValueError(f"views.rot90 needs square images, got {tuple(x.shape[-2:])}")
            k = torch.randint(4, (m,), device=x.device)
            turned = torch.stack([torch.rot90(x, j, dims=(-2, -1)) for j in range(4)])  # (4, M, C, H, W)
            x = turned[k, torch.arange(m, device=x.device)]
            y = self._forget(y, k != 0, "rot90")
            a = None if a is None else a + k.to(a.dtype) * (math.pi / 2)
            if self.position is not None:
                for j in range(1, 4):  # the j-th quarter turn of the rows with k >= j: (x, y) -> (y, K - 1 - x)
                    px, py = y[:, self.position[0]], y[:, self.position[1]]
                    turn = k >= j
                    y = self._place(y, torch.where(turn, py, px), torch.where(turn, self._mirror(px), py))
        if "flip" in self.moves:
            mirror = torch.rand(m, device=x.device) < 0.5
            x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
            y = self._forget(y, mirror, "flip")
            a = None if a is None else torch.where(mirror, -a, a)
            if self.position is not None:
                px = y[:, self.position[0]]
                y = self._place(y, torch.where(mirror, self._mirror(px), px), y[:, self.position[1]])
        if "shift" in self.moves:
            room = None
            if self.position is not None:  # keep a known place on its grid
                px, py = y[:, self.position[0]], y[:, self.position[1]]
                top = self.grid - 1
                room = (py, torch.where(py >= 0, top - py, py), px, torch.where(px >= 0, top - px, px))
            x, dy, dx = shift_within_frame(x, room)
            y = self._forget(y, (dy != 0) | (dx != 0), "shift")
            if self.position is not None:
                y = self._place(y, self._moved(y[:, self.position[0]], dx), self._moved(y[:, self.position[1]], dy))
        return x, y, a

    def _mirror(self, index: torch.Tensor) -> torch.Tensor:
        """Grid index i -> K - 1 - i, unknown (-1) kept."""
        return torch.where(index >= 0, self.grid - 1 - index, index)

    def _moved(self, index: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """Grid index i -> i + pixels, -1 when unknown or off the grid."""
        moved = index + pixels
        return torch.where((index >= 0) & (moved >= 0) & (moved < self.grid), moved, torch.full_like(moved, -1))

    def _place(self, labels: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
        """``labels`` with the position columns set to (px, py) (M,), both unknown where either is."""
        both = (px >= 0) & (py >= 0)
        out = labels.clone()
        out[:, self.position[0]] = torch.where(both, px, -1)
        out[:, self.position[1]] = torch.where(both, py, -1)
        return out

    def _forget(self, labels: torch.Tensor, moved: torch.Tensor, move: str) -> torch.Tensor:
        """``labels`` (M, F) with -1 where the row ``moved`` (M,) bool and the move does not keep the column."""
        lost = moved[:, None] & ~self._keep(move, labels.device)[None, :]
        return torch.where(lost, torch.full_like(labels, -1), labels)


def shift_within_frame(images: torch.Tensor, room: tuple[torch.Tensor, ...] | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shift each image by a random whole-pixel (dy, dx) that keeps its foreground in the frame.

    images: (M, C, H, W) in [0, 1]; room: optional (up, down, left, right) (M,) int64 each, the
    most pixels a row may move that way (-1: no bound), e.g. to keep an object's place on its
    grid. Returns (shifted (M, C, H, W), dy (M,), dx (M,) int64: rows down and columns right). An
    image with no foreground stays where it is.
    """
    m, c, h, w = images.shape
    fill = images.flatten(2).median(dim=2).values[:, :, None, None]  # (M, C, 1, 1) each channel's background
    fg = (images - fill).abs().amax(dim=1) > FOREGROUND  # (M, H, W)
    up, down, left, right = (None,) * 4 if room is None else room
    dy = _offset(fg.any(dim=2), h, up, down)  # rows with foreground
    dx = _offset(fg.any(dim=1), w, left, right)
    rows = torch.arange(h, device=images.device)[None, :] - dy[:, None]  # (M, H): source row of each row
    cols = torch.arange(w, device=images.device)[None, :] - dx[:, None]  # (M, W)
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (M, H, W)
    flat = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]  # (M, H, W)
    moved = images.flatten(2).gather(2, flat.flatten(1)[:, None, :].expand(m, c, h * w)).view(m, c, h, w)
    return torch.where(inside[:, None], moved, fill), dy, dx


def _offset(occupied: torch.Tensor, size: int, back: torch.Tensor | None = None,
            forth: torch.Tensor | None = None) -> torch.Tensor:
    """A random whole-pixel offset per row of ``occupied`` (M, size) bool that keeps its True span
    inside [0, size), at most ``back`` pixels down the index and ``forth`` up it where those are
    >= 0: uniform over the allowed offsets; 0 where nothing is occupied. -> (M,) int64."""
    index = torch.arange(size, device=occupied.device)[None, :]
    first = torch.where(occupied, index, size).amin(dim=1)  # (M,) the span may move back by first
    last = torch.where(occupied, index, -1).amax(dim=1)  # ... and forth by size - 1 - last
    lo, hi = first, size - 1 - last
    if back is not None:
        lo = torch.where(back >= 0, torch.minimum(lo, back), lo)
    if forth is not None:
        hi = torch.where(forth >= 0, torch.minimum(hi, forth), hi)
    draw = (torch.rand(occupied.shape[0], device=occupied.device) * (lo + hi + 1)).floor().long() - lo
    return torch.where(occupied.any(dim=1), draw.clamp(max=size - 1), torch.zeros_like(draw))
