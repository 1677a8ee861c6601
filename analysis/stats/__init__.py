"""Pure statistics core of the platform: formulas, mixed models, OLS, multiple testing.

Nothing here imports Django; every function takes plain data (pandas/numpy) and returns plain
data or dataclasses, so it runs the same from a Celery task, a test or a notebook.
"""
