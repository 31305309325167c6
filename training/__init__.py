"""Data, geometry, exact EMD, losses and training loops of econ-emd."""
