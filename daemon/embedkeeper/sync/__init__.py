"""The sync pass: plan what to walk, claim -> embed -> write, and record the run. The loop
(pipeline.py) runs no SQL and no model; the store and the backend do."""

from __future__ import annotations
