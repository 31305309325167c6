"""Small Keras layers shared by the networks: unit-sum normalization and TC arrangements.

Every network of the project takes modules in CALQ order (48 values) and arranges them
into the image its convolutions expect inside the graph, so callers (losses, evaluation,
an external published model) all speak one format.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from econ_emd.geometry import N_TC, PIXEL_OF_CALQ_8X8, calq_to_4x4x3

from .arch import ARRANGEMENTS  # noqa: F401 (re-exported)

IMAGE_SHAPES = {"4x4x3": (4, 4, 3), "8x8": (8, 8, 1)}

#: the numerically safe floor of a module sum (an all-zero module maps to all zeros).
SUM_FLOOR = 1e-12


@tf.keras.utils.register_keras_serializable(package="econ_emd")
class UnitSum(tf.keras.layers.Layer):
    """x / sum(x) over the last axis, differentiable; an all-zero row stays zero (no NaN)."""

    def call(self, x):
        s = tf.reduce_sum(x, axis=-1, keepdims=True)
        return x / tf.maximum(s, SUM_FLOOR)


def _gather_index(arrangement: str) -> np.ndarray:
    """For each pixel of the flattened image, the CALQ index it holds (-1: dead pixel)."""
    if arrangement == "4x4x3":
        return calq_to_4x4x3(np.arange(N_TC)).reshape(-1)
    if arrangement == "8x8":
        idx = np.full(64, -1, dtype=np.int64)
        idx[PIXEL_OF_CALQ_8X8] = np.arange(N_TC)
        return idx
    raise ValueError(f"unknown arrangement '{arrangement}' (choose {', '.join(ARRANGEMENTS)})")


@tf.keras.utils.register_keras_serializable(package="econ_emd")
class ArrangeTCs(tf.keras.layers.Layer):
    """(batch, 48) CALQ order -> (batch, H, W, C) image of the given arrangement."""

    def __init__(self, arrangement: str = "4x4x3", **kwargs):
        super().__init__(**kwargs)
        self.arrangement = arrangement
        idx = _gather_index(arrangement)
        # a zero column appended at index 48 feeds the dead pixels
        self._index = tf.constant(np.where(idx < 0, N_TC, idx), dtype=tf.int32)
        self._shape = IMAGE_SHAPES[arrangement]

    def call(self, x):
        padded = tf.concat([x, tf.zeros_like(x[:, :1])], axis=-1)
        flat = tf.gather(padded, self._index, axis=-1)
        return tf.reshape(flat, (-1, *self._shape))

    def get_config(self):
        return {**super().get_config(), "arrangement": self.arrangement}


CUSTOM_OBJECTS = {"UnitSum": UnitSum, "ArrangeTCs": ArrangeTCs}
