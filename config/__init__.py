"""One ``Settings`` object for the whole application, and the `Clock` its decisions read."""

from config.clock import SYSTEM_CLOCK, Clock, ManualClock, SystemClock
from config.settings import Settings, load_settings

__all__ = ["SYSTEM_CLOCK", "Clock", "ManualClock", "Settings", "SystemClock", "load_settings"]
