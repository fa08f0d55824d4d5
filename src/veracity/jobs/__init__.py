"""Asynchronous jobs: long videos and large batches queued in the results database, run by
workers in every replica, with signed webhooks when they end."""
