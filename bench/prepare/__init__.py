"""Preparers: turn each public release into the prepared format of :mod:`bench.data`.

One module per real dataset, each exposing ``prepare(dataset, *, source, stimuli=None, root=None, **settings)``.
"""
