"""The models: one module per family, each ending with its hookimpl."""
