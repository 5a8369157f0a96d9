"""The serving layer (Ray Serve HTTP API with regime-aware ensembles) is built on top of the registry.

It imports the registry and the core, never the CLI.
"""
