"""Process statistics: snapshots of processes (psutil), sampled off the event loop."""
