"""The replication engine: manifest, plan, pool and what paces them."""
