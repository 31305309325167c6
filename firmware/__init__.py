"""hls4ml conversion, C simulation, bit-accuracy checks and report parsing of econ-emd."""
