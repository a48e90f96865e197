from django.apps import AppConfig


class LabelingConfig(AppConfig):
    name = "labeling"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Django's way: the signal handlers import models, which exist only once the registry is ready.
        from labeling import signals

        signals.connect()
