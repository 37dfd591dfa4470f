"""Public benchmarks for ``qa eval``: BEIR folders and XQuAD (placeholder replaced below)."""
