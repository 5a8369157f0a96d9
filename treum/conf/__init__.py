"""Hydra config groups of treum (a package, so that Hydra finds it as pkg://treum.conf)."""
