"""Analyses of trained models (``hoikit analyze``): :mod:`hoikit.analysis.tokens`."""
