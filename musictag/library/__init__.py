"""Tagging whole libraries: crash-safe result logs, cluster shards, tags in files, embeddings.

Each module does one job and none imports torch, so a machine that only writes tags or merges
shards needs no model.
"""
