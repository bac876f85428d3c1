"""The durable interpreter: runs driven step by step, every transition written before it acts."""

from soar.engine.clock import Clock, FakeClock, SystemClock
from soar.engine.engine import Engine
from soar.engine.executor import CURRENT_RUN, RunExecutor

__all__ = ["CURRENT_RUN", "Clock", "Engine", "FakeClock", "RunExecutor", "SystemClock"]
