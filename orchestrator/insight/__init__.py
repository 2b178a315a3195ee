"""What the ledger and the service say, summarised: reports and metrics."""
