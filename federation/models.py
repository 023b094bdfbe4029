"""The federation app's table, Source, is declared in keys.models (see there).

This module re-exports it, so the app keeps a models module: Django creates
the content type and permissions of an app's models only for apps that have
one.
"""

from keys.models import Source

__all__ = ["Source"]
