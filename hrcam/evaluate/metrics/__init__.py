"""Localization and classification metrics in pure NumPy (importing this never imports TensorFlow)."""
