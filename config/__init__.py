"""One ``Settings`` object for the whole application."""

from config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
