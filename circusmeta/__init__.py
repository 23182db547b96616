"""circusmeta: treat a pool of circusd nodes as one (stateless).

``Pool`` is the library side (``async with Pool.from_file(path) as pool: await pool.call(...)``),
a result per node; ``circusmeta.cli`` the command line. The pool file is the only state.
"""
from .api import AddResult, Pool, SelectionError
from .fanout import ACTIVE, NOT_AVAILABLE, UNRESPONSIVE, NodeResult, exit_code
from .pool import Collection, Member, NodeSpec, PoolConfig, load_pool, locate_pool, parse_pool

__all__ = ["Pool", "AddResult", "SelectionError", "NodeResult", "exit_code", "ACTIVE",
           "UNRESPONSIVE", "NOT_AVAILABLE", "PoolConfig", "NodeSpec", "Collection", "Member",
           "parse_pool", "load_pool", "locate_pool"]
# the function is exported as run_rolling: ``circusmeta.rolling`` stays the module
from .rolling import Progress, RollingReport, Step, UnknownTarget
from .rolling import rolling as run_rolling

__all__ += ["run_rolling", "RollingReport", "Step", "Progress", "UnknownTarget"]
