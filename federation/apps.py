from django.apps import AppConfig


class FederationConfig(AppConfig):
    name = "federation"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from keys.models import Source
        from keys.services.published_files import clear_final_misses

        # A new or changed source may answer what was a final miss: from now
        # on the front server asks the application again (this node at once,
        # the others when their follower next looks).
        post_save.connect(clear_final_misses, sender=Source, dispatch_uid="final-misses-save")
        post_delete.connect(clear_final_misses, sender=Source, dispatch_uid="final-misses-delete")

    verbose_name = "Federation"
