"""Circus 0.19's ``circus.stream``: its stream class names and their call contract, for stream
classes and tools written against it (a stream is called with ``{"data": bytes, "pid": int,
"name": "stdout" | "stderr"}``). See :mod:`circus.compat.streams`; our own streams are
:mod:`circus.streams`.
"""
from circus.compat.removed import removed_names
from circus.compat.streams import (Empty, FancyStdoutStream, FileStream, QueueStream,
                                   StdoutStream, TimedRotatingFileStream, WatchedFileStream,
                                   get_stream)

__all__ = ["FileStream", "WatchedFileStream", "TimedRotatingFileStream", "StdoutStream",
           "FancyStdoutStream", "QueueStream", "Empty", "get_stream"]

__getattr__ = removed_names(__name__, {
    "Redirector": "circusd reads the processes' pipes itself (circus.streams.pump); a stream "
                  "is only called with each line",
    "get_pipe_redirector": "circusd reads the processes' pipes itself (circus.streams.pump)",
    "TailStream": "use circusctl tail (the tail command)",
})
