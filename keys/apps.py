from django.apps import AppConfig


class KeysConfig(AppConfig):
    name = "keys"
    verbose_name = "Keys"

    def ready(self) -> None:
        # The system checks, and the tasks registered in every process (the
        # outbox wakes its delivery task by name, web processes included).
        from . import checks, tasks  # noqa: F401
