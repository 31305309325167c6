"""Keras / QKeras network builders of econ-emd (no I/O, no training loops)."""
