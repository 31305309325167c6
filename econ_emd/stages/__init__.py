"""The bodies of the pipeline's stages, each with its typed result.

A body takes a `StageContext` and returns a `StageResult`; it never imports the registry
(`econ_emd.registry` imports the bodies), so the stages know nothing of each other except
through the context: the folders of the stages they declared as inputs.
"""
