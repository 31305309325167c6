"""The base layer of econ-emd: what every other room agrees on and imports from.

Crash-safe artifact I/O and content digests, the error classes a user can meet, the strict
schema base of every config section, seed derivation, units, markdown tables, the run
directory's lock. Nothing here imports from another room.
"""
