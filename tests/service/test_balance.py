"""`api.balance`: whose turn it is to accept, from the workers' shared counts."""

from __future__ import annotations

import asyncio
import time

from liaison.service.api.balance import TURN_WAIT, Load, WorkerLoad


def test_a_worker_accepts_only_while_it_holds_no_more_than_any_listening_worker() -> None:
    load = Load(3)
    a, b, c = load.of(0), load.of(1), load.of(2)
    a.listening()
    assert a.my_turn()  # the others are not listening: left out
    b.listening()
    first = a.opened()
    assert not a.my_turn() and b.my_turn()
    c.listening()
    assert b.my_turn() and c.my_turn() and not a.my_turn()
    second = b.opened()
    assert not b.my_turn() and c.my_turn() and not a.my_turn()
    first()
    first()  # once, however often called
    assert a.count == 0 and a.my_turn()
    second()
    assert b.count == 0
    load.down(2)  # a worker that died is left out until it listens again
    again = a.opened()
    assert not a.my_turn() and b.my_turn()
    again()


def _a_ahead() -> tuple[WorkerLoad, WorkerLoad]:
    """Two listening workers, the first holding one connection: not its turn."""
    load = Load(2)
    a, b = load.of(0), load.of(1)
    a.listening()
    b.listening()
    a.opened()
    return a, b


def test_waiting_for_a_turn_ends_after_turn_wait_whatever_the_others() -> None:
    a, _ = _a_ahead()  # b never accepts (its event loop stuck, say): a waits a little, then goes on
    start = time.monotonic()
    asyncio.run(a.wait_turn())
    assert time.monotonic() - start >= TURN_WAIT * 0.9


def test_a_turn_that_comes_ends_the_wait() -> None:
    a, b = _a_ahead()

    async def main() -> bool:
        waiting = asyncio.ensure_future(a.wait_turn())
        await asyncio.sleep(0)
        b.opened()  # the other worker accepted one
        await asyncio.wait_for(waiting, TURN_WAIT * 20)
        return a.my_turn()

    assert asyncio.run(main())


def test_after_a_wait_that_ran_out_no_more_waiting_until_another_count_moves() -> None:
    a, b = _a_ahead()

    async def timed() -> float:
        start = asyncio.get_running_loop().time()
        await a.wait_turn()
        return asyncio.get_running_loop().time() - start

    async def main() -> tuple[float, float, float]:
        first = await timed()  # b takes nothing: the wait runs out
        a.opened()
        a.opened()
        second = await timed()  # b's count has not moved: a goes on at once
        b.opened()  # b moves again: turns again (a holds 3, b 1)
        third = await timed()
        return first, second, third

    first, second, third = asyncio.run(main())
    assert first >= TURN_WAIT * 0.9 and third >= TURN_WAIT * 0.9, (first, third)
    assert second < TURN_WAIT / 2, second
