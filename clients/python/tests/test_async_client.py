"""AsyncClient against a real droverd with sim workers (docs/API.md)."""
from __future__ import annotations

import asyncio
import unittest

from droverd import WAIT_S, Droverd, wait_until
from drover_client import AsyncClient, ConnectionLostError, DroverError

LONG = 100_000  # tokens: a stream that would run for minutes unless cancelled
D: Droverd


def setUpModule() -> None:
    global D
    D = Droverd(workers=2).start()


def tearDownModule() -> None:
    D.close()


def quiet_slow_callbacks() -> None:
    # The test loop runs in debug mode; the fixture's blocking admin calls are not the client's.
    asyncio.get_running_loop().slow_callback_duration = 5.0


async def wait_async(pred, what: str) -> None:
    # The fixture's admin calls block; run the poll off the event loop.
    await asyncio.get_running_loop().run_in_executor(None, lambda: wait_until(pred, what=what))


class AsyncClientTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        quiet_slow_callbacks()
        self.c = AsyncClient(D.socket, timeout=WAIT_S)

    async def asyncTearDown(self) -> None:
        await self.c.close()

    async def test_unary_equals_droverctl(self) -> None:
        r = await self.c.generate("async unary equality", max_tokens=12, seed=7)
        [ctl] = D.droverctl("generate", "async unary equality", "--max-tokens", "12", "--seed", "7")
        self.assertEqual((r["text"], r["finish_reason"], r["usage"]),
                         (ctl["text"], ctl["finish_reason"], ctl["usage"]))

    async def test_stream_equals_droverctl(self) -> None:
        async with self.c.stream("async stream equality", max_tokens=12, seed=9) as s:
            chunks = [c async for c in s]
        ctl = D.droverctl("generate", "async stream equality", "--stream", "--max-tokens", "12", "--seed", "9")
        self.assertEqual([c["index"] for c in chunks], list(range(len(chunks))))
        self.assertEqual("".join(c["text"] for c in chunks), "".join(m["params"]["text"] for m in ctl[:-1]))
        self.assertEqual(s.result["text"], ctl[-1]["text"])

    async def test_cancelled_task_cancels_the_stream_at_the_worker(self) -> None:
        pids = {w["pid"] for w in D.workers()}
        got_three = asyncio.Event()

        async def consume() -> None:
            n = 0
            async for _ in self.c.stream("abandoned async stream", max_tokens=LONG, seed=1):
                n += 1
                if n == 3:
                    got_three.set()

        task = asyncio.ensure_future(consume())
        await asyncio.wait_for(got_three.wait(), WAIT_S)
        self.assertGreater(D.inflight(), 0)
        task.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await task
        await wait_async(lambda: D.inflight() == 0, "the worker to end the cancelled stream")
        self.assertEqual({w["pid"] for w in D.workers()}, pids, "no worker was replaced")
        self.assertEqual((await self.c.health())["workers_total"], 2)

    async def test_timeout_raises_timed_out_and_cancels(self) -> None:
        with self.assertRaises(DroverError) as e:
            await self.c.generate("too slow", max_tokens=LONG, timeout=0.3)
        self.assertEqual(e.exception.code, -32004)
        await wait_async(lambda: D.inflight() == 0, "the timed-out call to be cancelled")

    async def test_invalid_params(self) -> None:
        with self.assertRaises(DroverError) as e:
            await self.c.generate(["not", "a", "string"])
        self.assertEqual(e.exception.code, -32602)
        self.assertIn("prompt", e.exception.data["detail"])

    async def test_tokenize_detokenize_health_models(self) -> None:
        tokens = await self.c.tokenize("abc")
        self.assertEqual(tokens, [97, 98, 99])
        self.assertEqual(await self.c.detokenize(tokens), "abc")
        self.assertEqual((await self.c.health())["workers_total"], 2)
        self.assertIn("sim", [m["id"] for m in await self.c.models()])

    async def test_worker_killed_mid_stream_the_stream_continues(self) -> None:
        reference = await self.c.generate("async failover", max_tokens=400, seed=12, cache="bypass")
        chunks = []
        async with self.c.stream("async failover", max_tokens=400, seed=12, cache="bypass") as s:
            async for chunk in s:
                chunks.append(chunk)
                if len(chunks) == 5:
                    [busy] = [w for w in D.workers() if w["inflight"] > 0]
                    D.admin("workers.kill", {"id": busy["id"], "signal": "KILL"})
        self.assertEqual([c["index"] for c in chunks], list(range(len(chunks))))
        self.assertEqual("".join(c["text"] for c in chunks), reference["text"])
        self.assertEqual(s.result["text"], reference["text"])
        await wait_async(lambda: sum(w["state"] == "ready" for w in D.workers()) == 2, "the replacement")

    async def test_thousand_concurrent_calls_answered_once_each(self) -> None:
        n = 1000
        results = await asyncio.gather(*(self.c.generate(f"async many {i}", max_tokens=2, seed=i) for i in range(n)))
        self.assertEqual(len(results), n)
        self.assertTrue(all(r["usage"]["completion_tokens"] == 2 for r in results))
        self.assertEqual(self.c._conn._calls, {}, "every call was answered and forgotten")


class AsyncClientServerLifecycleTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        quiet_slow_callbacks()

    async def test_overloaded_raises_with_retry_after(self) -> None:
        d = Droverd(workers=1, server_yaml=["max_queue: 1"]).start()
        try:
            async with AsyncClient(d.socket, timeout=WAIT_S) as c:
                async with c.stream("holds the only slot", max_tokens=LONG) as s:
                    await s.__anext__()
                    with self.assertRaises(DroverError) as e:
                        await c.generate("refused", max_tokens=1)
                    self.assertEqual(e.exception.code, -32001)
                    self.assertIsInstance(e.exception.retry_after_ms, int)
        finally:
            d.close()

    async def test_droverd_restarted_in_flight_fails_next_call_succeeds(self) -> None:
        d = Droverd(workers=1).start()
        try:
            async with AsyncClient(d.socket, timeout=WAIT_S, connect_timeout=WAIT_S) as c:
                s = c.stream("interrupted", max_tokens=LONG)
                await s.__anext__()
                d.kill()
                with self.assertRaises(ConnectionLostError):
                    async for _ in s:
                        pass
                d.launch()
                self.assertEqual((await c.health())["workers_total"], 1)  # reconnects while droverd starts
                await asyncio.get_running_loop().run_in_executor(None, d.wait_ready)
                self.assertEqual((await c.generate("after restart", max_tokens=3))["usage"]["completion_tokens"], 3)
        finally:
            d.close()


class AsyncClientTcpRetryTest(unittest.IsolatedAsyncioTestCase):
    """tcp:// and retry_safe with AsyncClient: a droverd SIGKILLed with calls in flight and
    started again on the same TCP port."""

    async def asyncSetUp(self) -> None:
        quiet_slow_callbacks()
        self.d = Droverd(workers=1, tcp=True).start()
        self.d.pin_tcp_port()
        self.addr = self.d.tcp_address()

    async def asyncTearDown(self) -> None:
        self.d.close()

    async def kill_with_calls_in_flight(self, calls: list) -> list:
        tasks = [asyncio.ensure_future(call) for call in calls]
        await wait_async(lambda: self.d.inflight() >= 1, "the calls to reach the worker")
        self.d.kill()
        self.d.launch()
        return await asyncio.gather(*tasks, return_exceptions=True)

    async def test_tcp_address(self) -> None:
        async with AsyncClient(self.addr, timeout=WAIT_S) as c:
            r = await c.generate("over tcp", max_tokens=6, seed=3)
            async with AsyncClient(self.d.socket) as unix:
                self.assertEqual(r["text"], (await unix.generate("over tcp", max_tokens=6, seed=3))["text"])
            self.assertEqual(await c.tokenize("abc"), [97, 98, 99])

    async def test_only_the_seeded_generate_is_resent(self) -> None:
        async with AsyncClient(self.d.socket, timeout=WAIT_S) as quiet:
            expected = (await quiet.generate("resent", max_tokens=1000, seed=8, cache="bypass"))["text"]
        async with AsyncClient(self.addr, timeout=WAIT_S, connect_timeout=WAIT_S, retry_safe=True) as c, \
                AsyncClient(self.addr, timeout=WAIT_S, connect_timeout=WAIT_S) as off:
            await off.health()
            seeded, unseeded, default_off = await self.kill_with_calls_in_flight([
                c.generate("resent", max_tokens=1000, seed=8, cache="bypass"),
                c.generate("not resent", max_tokens=LONG),
                off.generate("off by default", max_tokens=LONG, seed=8)])
            self.assertEqual(seeded["text"], expected)
            self.assertIsInstance(unseeded, ConnectionLostError)
            self.assertIsInstance(default_off, ConnectionLostError)
            self.assertEqual((c.retries, off.retries), (1, 0))


if __name__ == "__main__":
    unittest.main()
