"""MarketGNN (being written; registers nothing yet)."""
