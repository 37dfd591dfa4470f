"""seedqa: local retrieval-augmented question answering over a folder of articles.

Importing this package is cheap: models and indexes load only when asked for.
"""

__version__ = "0.1.0"
