"""econ-emd: HGCAL ECON-T compression trained with a differentiable Earth Mover's Distance."""
__version__ = "0.1.0"
