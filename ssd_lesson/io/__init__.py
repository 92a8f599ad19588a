"""The lowest layer: writing files so that an interrupt loses nothing (atomic writes, held signals).

Imports the standard library only, so every layer above may use it.
"""
