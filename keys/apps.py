from django.apps import AppConfig


class KeysConfig(AppConfig):
    name = "keys"
    verbose_name = "Keys"

    def ready(self) -> None:
        from . import checks  # noqa: F401
