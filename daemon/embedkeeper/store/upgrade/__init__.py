"""v0.1's shared tables carried into the pairs' by migrate, their indexes, and what migrate
reports.
"""
