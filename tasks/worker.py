"""Entry point for Celery processes: ``celery -A tasks.worker worker|beat|flower``."""

from tasks.app import create_insights

insights = create_insights()
app = insights.celery
