"""Failure prediction and remaining-useful-life models: features, training, evaluation, prediction.
Pure Python: no Celery, no web framework."""
