"""The arbiter's core: state machines, the OS seam, processes, watchers, the arbiter, control."""
