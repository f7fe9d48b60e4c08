"""What embedkeeper remembers between passes: each pair's sync state (watermark, fingerprint) and
the runs table.
"""
