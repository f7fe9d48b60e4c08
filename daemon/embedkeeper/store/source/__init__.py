"""The user's table: its statements (psycopg.sql, built once per config) and the checks of the
database, the source and the model registry at start.
"""
