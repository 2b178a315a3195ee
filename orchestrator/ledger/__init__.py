"""The run ledger: its format, writer, reader, recorder, history fold and snapshot."""
