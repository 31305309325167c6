"""The data of a run: the synthetic HGCAL-like generator, ECON-T CSV/HDF5 loaders, the
train/val/test split, reconstruction-like perturbations and the exact-EMD label pairs."""
