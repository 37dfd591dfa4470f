"""Asking: retrieval, answer extraction and the service that swaps generations under queries."""
