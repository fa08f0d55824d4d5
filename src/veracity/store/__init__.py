"""The results store: every verdict recorded in a database, read back, reviewed and erased."""
