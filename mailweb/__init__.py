"""Mailweb: a self-hosted shared inbox. Importing the package loads the Celery app for workers."""

from mailweb.celery import app as celery_app

__all__ = ["celery_app"]
