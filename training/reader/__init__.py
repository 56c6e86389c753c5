"""The attribute reader: an independent classifier that reads every ground-truth factor of an image.

Edits are judged the way image editing is judged (InterFaceGAN, Shen et al. 2020, CVPR;
StyleFlow, Abdal et al. 2021, ACM TOG): a classifier that never saw a model's output reads
the edited image, and the edit succeeds if it sees the asked value and every other factor
unchanged. ``load_reader("dsprites")`` returns the reader of a dataset (shipped weights,
else the cache, else a fresh training: see :mod:`.store`); ``reader.read(images)`` gives a
:class:`Reading`; :func:`agreement` is the one rule for "reads as".

The dSprites family has readers of its own (``READABLE``); any other dataset that renders
images from its factors gets the generic reader (:mod:`.generic`: the whole image, one
classification head per factor over its grid), judged by the same :func:`agreement` with the
tolerance of each factor's kind (``EDIT_TOLERANCE_BY_KIND``): ``load_reader("idsprites")``.

Modules: :mod:`.network` (the centred crop and the conv net), :mod:`.reading` (reading and
agreement, the factor layout), :mod:`.generic` (the generic reader), :mod:`.fit` (training on
ground-truth renders, held-out accuracy), :mod:`.store` (weights on disk).
"""

from .generic import GenericReader
from .reading import (
    EDIT_TOLERANCE,
    EDIT_TOLERANCE_BY_KIND,
    EXACT,
    READABLE,
    AttributeReader,
    FactorLayout,
    Reading,
    agreement,
)
from .store import load_reader

__all__ = ["EDIT_TOLERANCE", "EDIT_TOLERANCE_BY_KIND", "EXACT", "READABLE", "AttributeReader", "FactorLayout",
           "GenericReader", "Reading", "agreement", "load_reader"]
