"""One lifecycle for every background job (imports, exports, training runs, scoring jobs).

``models.Job`` is the abstract model each job type inherits; ``services`` claims, heartbeats, finishes,
fails and reaps them, the same way for every type; ``worker`` lets a starting Celery worker take over the
jobs of a dead one. How a job survives its worker is told in ``services``' docstring.
"""
