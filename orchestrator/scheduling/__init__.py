"""The nightly scheduler: cron firing in an explicit time zone, no overlap, missed runs."""
