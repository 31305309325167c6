"""What loading a saved encoder or decoder needs: every custom object the product's models
use (QKeras layers and quantizers, the live-pixel mask, the layers of the encoder in the
ASIC's arithmetic, the HGQ proxy model's quantizer where HGQ is installed)."""
from __future__ import annotations


def custom_objects() -> dict:
    """Custom objects of saved encoders and decoders, for `tf.keras.models.load_model`."""
    from qkeras.utils import _add_supported_quantized_objects

    from .asic_encoder import custom_objects as asic_objects
    from .econt import LiveMask
    from .hgq_encoder import custom_objects as hgq_objects

    objects: dict = {"LiveMask": LiveMask, **hgq_objects(), **asic_objects()}
    _add_supported_quantized_objects(objects)
    return objects
