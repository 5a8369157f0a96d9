"""The built-in explainers, one plugin module each (``treum_explainers``): SHAP, LIME, a decision-tree
surrogate, counterfactuals, conformal prediction and feature importance.

Each checks a model's capabilities through its ``ExplainerSpec`` (``requires``, ``excludes``) and
reads the model only through ``treum.core.explain.ExplainTarget``. Heavy libraries (shap, lime,
scikit-learn's trees) are imported when an explanation runs, never when the plugin loads.
"""
