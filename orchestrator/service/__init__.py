"""How the tool speaks to the CSBS service: record vocabulary, credentials."""
