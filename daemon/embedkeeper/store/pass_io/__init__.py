"""What a pass reads and writes: claims and their in-flight records, the fenced write of records
and chunks, prunes, the delete log, the pass's first look at the source.
"""
