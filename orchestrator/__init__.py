"""csbs-orchestrator: bulk cross-region replication of Huawei Cloud CSBS backups."""

__all__ = ["__version__"]

__version__ = "0.1.0"
