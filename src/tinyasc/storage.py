"""The one vocabulary of how a model is stored (a leaf: config, size, compress, export and evaluate use it).

- ``Storage``: what a model file holds (``artifact.py``): float32, float16, int8, binary, ``qat``
  (a quantisation-aware run's fake-quantised float model, which ships as its int8 conversion) and
  ``ensemble`` (several stored models averaged as one).
- ``QUANTIZE``: the config's ``quantize`` choices, each the storage it ships in and how it gets there.
- ``COMPRESS_STEPS``: the storage steps of ``tinyasc compress --method``, each a ``quantize`` value
  (``int8-ptq`` is the config's post-training ``int8``).
- ``EXPORT_PRECISIONS``: what ONNX export writes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args


class Storage(StrEnum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    INT8 = "int8"
    BINARY = "binary"
    QAT = "qat"
    ENSEMBLE = "ensemble"  # several stored models averaged as one (each member in its own storage)

    @property
    def is_float(self) -> bool:
        """Float weights a fine-tune, a re-count or an export can start from."""
        return self in (Storage.FLOAT32, Storage.FLOAT16)


Quantize = Literal["float32", "float16", "float16-all", "int8", "int8-qat", "binary"]
QUANTIZE: dict[str, Storage] = {
    "float32": Storage.FLOAT32,
    "float16": Storage.FLOAT16,  # post-training cast, batch norm float32 (the Keras baseline)
    "float16-all": Storage.FLOAT16,  # every tensor float16, batch norm too (the 2024/2025 baselines' half())
    "int8": Storage.INT8,  # post-training static quantisation calibrated on training clips
    "int8-qat": Storage.INT8,  # quantisation-aware training, then int8
    "binary": Storage.BINARY,  # packed 1-bit weights of a model.params={binary: true} model
}
assert set(QUANTIZE) == set(get_args(Quantize))

COMPRESS_STEPS: dict[str, str] = {
    "float32": "float32",
    "float16": "float16",
    "float16-all": "float16-all",
    "int8-ptq": "int8",
    "int8-qat": "int8-qat",
    "binary": "binary",
}

EXPORT_PRECISIONS = (Storage.FLOAT32, Storage.FLOAT16, Storage.INT8)


# The size-report precision (compress/size.py PRECISIONS) a config's ``quantize`` value ships at; 1-bit
# models are counted only once their signs are packed, so they have none.
SIZE_PRECISIONS: dict[str, str] = {
    "float32": "float32",
    "float16": "float16",
    "float16-all": "float16-all",
    "int8": "int8",
    "int8-qat": "int8",
}


def shipped_storage(quantize: str) -> Storage:
    """The storage a config's ``quantize`` value ships in."""
    try:
        return QUANTIZE[quantize]
    except KeyError:
        raise ValueError(f"quantize: {quantize!r}; expected one of {', '.join(QUANTIZE)}") from None
