"""Embedding: the interface, its backends (fake, torch, ONNX Runtime), the factory and batching."""
