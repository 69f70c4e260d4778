"""adamtune's SQL store: models, engine and sessions, and one query module per table.

Query functions take a ``Session`` first and never commit: the caller owns the
transaction (see :func:`tuner.db.engine.transaction`).
"""
