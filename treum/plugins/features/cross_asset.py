"""cross-asset features (being written; registers nothing yet)."""
