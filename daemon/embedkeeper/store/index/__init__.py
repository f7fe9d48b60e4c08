"""The pairs' vector indexes: build settings, the live index, and the drop/rebuild around a
deferring backfill.
"""
