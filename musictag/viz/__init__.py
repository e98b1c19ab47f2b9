"""Seeing what a model hears: filter estimates by gradient ascent (paper section 5.5) and taggrams.

- :mod:`.filters`: per-layer gradient ascent from seeded noise, spectra sorted by peak frequency
  (needs torch);
- :mod:`.taggram`: per-window tag scores placed on the track's time axis (any backend);
- :mod:`.plotting`: the figures, with matplotlib from the ``viz`` extra, imported when drawing.
"""
