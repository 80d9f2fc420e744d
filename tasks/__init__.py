"""Celery tasks, one module per queue (`gan`, `ml`, `llm`, `system`), all built on `LoggingTask`.

Task modules stay thin: load inputs, call domain code (GAN/, ml/, llm/), store outputs.
"""
