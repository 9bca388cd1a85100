"""Octo-style policy backend (PyTorch): SmallStem image tokens, T5 language tokens, a block-wise
causal transformer with readouts, and a diffusion action head. See backend.py for the entry points.
"""
