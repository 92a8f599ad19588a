"""The drawing layer: the article's figures and tables, drawn with matplotlib (no pyplot state).

Imports the core, data and model layers.
"""
