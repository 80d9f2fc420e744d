"""Grounded maintenance explanations: attributions to facts, providers (OpenAI-compatible and an
offline template), prompts and faithfulness checks. Pure Python: no Celery, no web framework."""
