"""Units shared by the generator, the loaders and the judges of a reconstruction."""
from __future__ import annotations

#: ADC counts per MIP_T: the synthetic generator's default conversion and the 1-MIP_T
#: threshold of the occupancy every figure is binned by (kept fixed so that occupancy bins
#: mean the same thing for every data source)
ADC_PER_MIP_T = 35.0
