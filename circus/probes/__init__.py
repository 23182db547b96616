"""Readiness and liveness probes. `spec` describes them (pure)."""

from .spec import (
    LIVENESS_KINDS,
    PROBE_KINDS,
    READINESS_KINDS,
    ExecProbe,
    HttpProbe,
    LogProbe,
    NotifyProbe,
    Probe,
    TcpProbe,
    parse_probe,
)

__all__ = [
    "ExecProbe", "HttpProbe", "LIVENESS_KINDS", "LogProbe", "NotifyProbe", "PROBE_KINDS", "Probe",
    "READINESS_KINDS", "TcpProbe", "parse_probe",
]
