"""Test support shipped with Circus: a scripted OS layer and a virtual clock."""
from circus.testing.clock import VirtualClockLoop, run_virtual
from circus.testing.fakeos import FakeOS, FakeProcess

__all__ = ["FakeOS", "FakeProcess", "VirtualClockLoop", "run_virtual"]
