"""Drift monitoring: a reference profile of what the model answered on its calibration
data, live windows of its answers from the results store, and a score per signal."""
