"""The bodies of the pipeline's stages, each with its typed result.

A body takes a `StageContext` and returns a `StageResult` (both in `result`, with what every
stage shares: the exact-EMD runner, the frozen EMD-CNN, the encoder stage's training
request). A body module imports `result` and nothing else of this folder, and never the
registry (`econ_emd.registry` imports the bodies): the stages know of each other only the
folders of the stages they declared as inputs (`tests/test_architecture.py` checks it).
"""
