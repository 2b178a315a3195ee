"""The replication engine: manifest, plan, job, pool, retries, overload control and progress."""
