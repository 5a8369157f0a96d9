"""treum: a plugin-based model zoo for financial machine learning."""

__version__ = "0.1.0"
