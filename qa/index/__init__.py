"""The index: files on disk, incremental builds, FAISS vectors, BM25, loading a generation."""
