"""ECON-T: the HGCAL trigger concentrator ASIC's data path, word for word.

What the ASIC does with one module each bunch crossing: unpack the 12 input link words
into 48 trigger-cell codes, MUX, float-to-fix, calibrate (CALQ), run one algorithm
(threshold sum, super trigger cells, best choice, repeater, autoencoder), format its packet
and stream it through the formatter buffer onto the output links. The rules follow the CMS
ECON-T emulator (`cmantill/ECONT_Emulator`) and are checked word for word against its
golden vectors (`econ-emd econt verify`). numpy only, so every layer above may use it.
"""
