"""What applications search: each source's serving view and the history of its switches."""

from __future__ import annotations
