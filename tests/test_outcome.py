"""circus.core.outcome.settle: which early exits of a waiting start are failed starts."""
import asyncio
from types import SimpleNamespace

import pytest

from circus.core.outcome import settle
from circus.core.policy import RestartPolicy
from circus.core.states import ProcessState as PS
from circus.errors import NotReady


class Output:
    def last(self, n, streams):
        return [{"pid": 7, "line": "bye", "stream": "stdout"}] if "stdout" in streams else []


def watcher(policy: RestartPolicy, code: int, state: PS):
    """A watcher whose process 7 exited with ``code`` 0.01 s after it started, its slot now in
    ``state`` (a job's slot is put away, EXITED -> STOPPED, once every process has exited)."""
    loop = asyncio.get_running_loop()
    exited = loop.create_future()
    exited.set_result(code)
    p = SimpleNamespace(exited=exited, io=None, started_at=loop.time() - 0.01, planned_exit=False,
                        state=state, last_uptime=0.01)
    return SimpleNamespace(name="job", cfg=SimpleNamespace(min_uptime=1.0), policy=policy,
                           _by_pid={7: p}, output=Output())


@pytest.mark.parametrize("policy", [RestartPolicy.NEVER, RestartPolicy.ON_FAILURE])
@pytest.mark.parametrize("state", [PS.EXITED, PS.STOPPED])
def test_a_job_that_completed_is_not_a_failed_start_whatever_became_of_its_slot(policy, state):
    async def main():
        await settle(watcher(policy, 0, state), [7])
    asyncio.run(main())


@pytest.mark.parametrize("policy, code", [(RestartPolicy.ALWAYS, 0), (RestartPolicy.NEVER, 1),
                                          (RestartPolicy.ON_FAILURE, 3)])
def test_an_early_exit_that_is_not_a_completed_job_is_a_failed_start(policy, code):
    async def main():
        with pytest.raises(NotReady, match=f"(?s)exit code {code} .* min_uptime = 1 s.*bye"):
            await settle(watcher(policy, code, PS.BACKOFF if policy is RestartPolicy.ALWAYS
                                 else PS.EXITED), [7])
    asyncio.run(main())
