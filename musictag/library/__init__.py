"""Tagging whole libraries: a run (:mod:`.run`) over crash-safe result logs, cluster shards and
tags in files; embeddings.

Each module does one job and none imports torch, so a machine that only writes tags or merges
shards needs no model.
"""
