"""The base layer of econ-emd: what every other room agrees on and imports from.

HGCAL trigger-cell geometry and the ECON-T sum normalization, crash-safe artifact I/O, the
error classes a user can meet, the strict schema base of every config section, seed
derivation and markdown tables. Nothing here imports from another room.
"""
