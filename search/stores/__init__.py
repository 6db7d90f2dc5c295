"""Where the vectors live: the FAISS generations on disk (faiss) or PostgreSQL + pgvector (pgvector)."""
