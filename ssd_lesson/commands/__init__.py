"""The command line: ``python -m ssd_lesson {dissect,train,evaluate,bench,notebooks}``.

The top layer: imports any other, and nothing imports it.
"""
