"""Evaluation behind ``qa eval``: metrics, dataset readers and runners."""
