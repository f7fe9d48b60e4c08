"""A (source, model) pair's own relations: its tables made and recorded, its search view, its full-
text column.
"""
