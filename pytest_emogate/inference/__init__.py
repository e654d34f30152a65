"""Samples -> answers: where the answers come from (a predictions file, or Emotion-LLaMA inference), the batches,
greedy generation and label scoring, the per-sample answer cache, and inference on several devices.

Importing this package imports nothing heavy: torch, transformers and the data reader load inside the functions
that need them.
"""
