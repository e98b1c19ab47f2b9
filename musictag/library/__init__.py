"""Tagging whole libraries: a run (:mod:`.run`) over crash-safe result logs, cluster shards and
tags in files; embeddings.

Each module does one job and none imports torch, so a machine that only writes tags or merges
shards needs no model.
"""

#: The metadata field ``--write-tags`` writes by default; here, so that the CLI's help names it
#: without importing mutagen (:mod:`.tagwriter`) on runs that write no tags.
DEFAULT_FIELD = "MUSICTAG"
