"""Moving mail: provider clients, the sync engine, ingestion, sending and Celery tasks."""
