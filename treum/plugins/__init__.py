"""Built-in plugins that are not models: data sets, features, baselines."""
