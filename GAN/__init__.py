"""Synthetic sensor data: SDV TVAE training and sampling that keeps rare failures, with a
quality, utility (TSTR) and privacy report. Pure Python: no Celery, no web framework."""
