"""Inference engines behind :class:`musictag.inference.Tagger`; each maps windows to probabilities.

A backend takes ``(batch, window_samples)`` float32 windows and returns ``(batch, n_labels)``
sigmoid scores and, for similarity search, ``(batch, embedding_size)`` penultimate activations.
Backends are imported lazily so that the onnxruntime path never imports torch.
"""
