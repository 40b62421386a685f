"""Learned baselines: what is usual for each DAG, task, pool and data product, from history.

Pure (no I/O, time passed in). The collector's writer feeds it facts as they are stored
(`learner.Baselines.observe`), after restoring it on start from the state DB's recent history;
nothing here reads a database. See docs/design-notes.md, "Learned baselines".
"""
