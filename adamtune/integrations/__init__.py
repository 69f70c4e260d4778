"""Callbacks that connect training frameworks to an adamtune trial.

``adamtune.integrations.huggingface`` (``pip install adamtune[hf]``) and
``adamtune.integrations.lightning`` (``pip install adamtune[lightning]``); each imports its
framework when imported itself, never at ``import adamtune``.
"""
