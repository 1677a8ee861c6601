from django.apps import AppConfig


class AnalysisConfig(AppConfig):
    name = "analysis"
    label = "analysis"
    verbose_name = "Analysis"

    def ready(self) -> None:
        # Registers analysis runs as a leased job, so the lease sweep finds them.
        from analysis import jobs  # noqa: F401
