"""The small core: hookspecs, the plugin manager factory, contracts, data, evaluation.

Nothing in here imports another part of treum; models and other plugins are
found only through the plugin manager.
"""
