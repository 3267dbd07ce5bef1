#!/usr/bin/env python3
"""Tests of the drover worker SDK against a scripted supervisor (stdlib unittest).

Each test runs a WorkerRuntime in a thread of this process, connected to a listening socket the
test owns, and plays droverd's side message by message: the protocol edge cases droverd itself
never produces (malformed input, end of file mid-request, replies before init), the errors a
client may see, stop strings split across pieces, and queueing under max_concurrency.
tests/integration/python_worker_test.cpp runs this file; so can ``python3 test_drover_worker.py``.
Every wait has a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import tempfile
import threading
import time
import unittest
from collections.abc import Callable, Iterator, Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import drover_worker as dw  # noqa: E402  (the path above makes it importable from anywhere)

# The tests provoke errors on purpose; the SDK's log of them is noise here.
logging.getLogger("drover.worker").setLevel(logging.CRITICAL + 1)

TIMEOUT_S = 30.0


class ScriptedWorker(dw.Worker):
    """An engine whose generate yields the request's prompt split on "|", one piece each."""

    def __init__(self, models: Sequence[str] = ("m",), fail_load: bool = False) -> None:
        self.models = list(models)
        self.fail_load = fail_load
        self.started = threading.Event()  # set when a generate begins
        self.saw_cancel = threading.Event()  # set when a blocking generate saw its cancel
        self.closed = False

    def load(self, settings: dw.InitSettings) -> Sequence[str]:
        if self.fail_load:
            raise RuntimeError("weights not found")
        return self.models

    def generate(self, request: dw.GenerateRequest) -> Iterator[str | dw.Piece]:
        self.started.set()
        if request.prompt == "block":
            # Blocks until cancelled, as an engine stuck in a long step would.
            if request.wait_cancelled(TIMEOUT_S):
                self.saw_cancel.set()
                return
            yield "late"
            return
        if request.prompt == "boom":
            raise ValueError("engine exploded")
        if request.prompt == "refuse":
            raise dw.WorkerError(-32001, "Overloaded", {"retry_after_ms": 5})
        if request.prompt.startswith("pieces:"):
            yield dw.Piece("abc", tokens=3)
            yield dw.Piece("def", tokens=3)
            return
        yield from request.prompt.split("|")

    def tokenize(self, model: str, text: str) -> list[int]:
        return [ord(ch) for ch in text]

    def detokenize(self, model: str, tokens: Sequence[int]) -> str:
        return "".join(chr(t) for t in tokens)

    def close(self) -> None:
        self.closed = True


class Supervisor:
    """droverd's side of one control connection, scripted by a test."""

    def __init__(self, worker: dw.Worker, max_message_bytes: int = dw.MAX_MESSAGE_BYTES) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="drover-sdk-")
        path = os.path.join(self._dir.name, "c.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(1)
        self._listener.settimeout(TIMEOUT_S)
        self.runtime = dw.WorkerRuntime(worker, path, 4, max_message_bytes)
        self.exit_code: int | None = None
        self._thread = threading.Thread(target=self._run, name="sdk-under-test")
        self._thread.start()
        self.conn, _ = self._listener.accept()
        self.conn.settimeout(TIMEOUT_S)
        self._buf = b""
        self.next_id = 1

    def _run(self) -> None:
        self.exit_code = self.runtime.run()

    def close(self) -> None:
        self.conn.close()
        self._thread.join(TIMEOUT_S)
        self._listener.close()
        self._dir.cleanup()

    def send_raw(self, data: bytes) -> None:
        self.conn.sendall(data)

    def send(self, message: dict[str, Any]) -> None:
        self.send_raw(json.dumps(message).encode() + b"\n")

    def request(self, method: str, params: Any = None) -> int:
        request_id = self.next_id
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return request_id

    def notify(self, method: str, params: Any = None) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params or {}})

    def read(self) -> dict[str, Any] | None:
        """The next message, or None at end of file (socket timeout: an exception)."""
        while b"\n" not in self._buf:
            data = self.conn.recv(65536)
            if not data:
                return None
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def read_until(
        self, pred: Callable[[dict[str, Any]], bool], others: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            msg = self.read()
            if msg is None:
                raise AssertionError("end of file before the expected message")
            if pred(msg):
                return msg
            if others is not None and msg.get("method") != "heartbeat":
                others.append(msg)
        raise AssertionError(f"no expected message within {TIMEOUT_S} s")

    def reply_to(
        self, request_id: int, others: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        return self.read_until(lambda m: m.get("id") == request_id and "method" not in m, others)

    def replies_to(
        self, ids: Sequence[int], others: list[dict[str, Any]] | None = None
    ) -> dict[int, dict[str, Any]]:
        """The replies to ``ids``, in whatever order they come; each id answered once."""
        got: dict[int, dict[str, Any]] = {}

        def collect(m: dict[str, Any]) -> bool:
            if "method" not in m and m.get("id") in ids:
                assert m["id"] not in got, f"a second reply to {m['id']}"
                got[m["id"]] = m
                return len(got) == len(ids)
            if others is not None and m.get("method") != "heartbeat":
                others.append(m)
            return False

        self.read_until(collect)
        return got

    def init(
        self,
        heartbeat_interval_ms: int = 1000,
        others: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        hello = self.read()
        assert hello is not None and hello["method"] == "hello", hello
        params = {
            "worker_id": 4,
            "generation": 1,
            "backend": "python",
            "heartbeat_interval_ms": heartbeat_interval_ms,
            "transport": "socket",
        }
        params.update(extra)
        return self.reply_to(self.request("init", params), others)

    def wait_exit(self) -> int | None:
        self._thread.join(TIMEOUT_S)
        return self.exit_code


def generate_params(prompt: str, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"prompt": prompt, "max_tokens": 64, "seed": 1, "stream": False}
    params.update(extra)
    return params


class SdkTestCase(unittest.TestCase):
    def start(self, worker: dw.Worker | None = None) -> Supervisor:
        sup = Supervisor(worker or ScriptedWorker())
        self.addCleanup(sup.close)
        return sup


class StopScannerTest(unittest.TestCase):
    def test_stop_string_split_across_pieces_ends_the_text_before_it(self) -> None:
        s = dw.StopScanner(["END"])
        self.assertEqual(s.add("abE"), "ab")
        self.assertEqual(s.add("N"), "")
        self.assertEqual(s.add("Dx"), "")
        self.assertTrue(s.stopped)
        self.assertEqual(s.text, "ab")

    def test_held_tail_is_released_when_it_does_not_become_a_stop(self) -> None:
        s = dw.StopScanner(["END"])
        released = s.add("abE") + s.add("No") + s.flush()
        self.assertFalse(s.stopped)
        self.assertEqual(released, "abENo")
        self.assertEqual(s.text, "abENo")

    def test_earliest_of_several_stops_wins(self) -> None:
        s = dw.StopScanner(["xyz", "b"])
        self.assertEqual(s.add("aaxyzb"), "aa")
        self.assertEqual(s.text, "aa")

    def test_without_stops_everything_is_released_at_once(self) -> None:
        s = dw.StopScanner([])
        self.assertEqual(s.add("hello"), "hello")
        self.assertEqual(s.flush(), "")


class HandshakeTest(SdkTestCase):
    def test_hello_then_init_then_heartbeats(self) -> None:
        sup = self.start(ScriptedWorker(models=("a", "b")))
        hello = sup.read()
        assert hello is not None
        self.assertEqual(hello["method"], "hello")
        self.assertNotIn("id", hello)
        p = hello["params"]
        self.assertEqual(p["worker_id"], 4)
        self.assertEqual(p["pid"], os.getpid())
        self.assertEqual(p["protocol"], 1)
        self.assertEqual(
            p["capabilities"],
            {"shm": False, "batch_tokenize": True, "batch": True, "stream": True, "models": []},
        )
        early = sup.request("generate", generate_params("x"))
        self.assertEqual(sup.reply_to(early)["error"]["code"], -32603)
        rid = sup.request("init", {"heartbeat_interval_ms": 20})
        reply = sup.reply_to(rid)
        self.assertEqual(reply["result"]["models"], ["a", "b"])
        self.assertGreaterEqual(reply["result"]["load_ms"], 0)
        again = sup.request("init", {"heartbeat_interval_ms": 20})
        self.assertEqual(sup.reply_to(again)["error"]["code"], -32600)
        g = sup.request("generate", generate_params("one|two"))
        self.assertEqual(sup.reply_to(g)["result"]["text"], "onetwo")
        # progress counts pieces produced and requests served: two pieces, one generate.
        hb = sup.read_until(
            lambda m: m.get("method") == "heartbeat" and m["params"]["progress"] == 3
        )
        self.assertEqual(hb["params"]["models"], ["a", "b"])
        self.assertEqual(hb["params"]["inflight"], 0)
        self.assertEqual(hb["params"]["queue_depth"], 0)
        self.assertGreater(hb["params"]["rss_bytes"], 0)

    def test_preload_warms_models_up_before_the_worker_is_ready(self) -> None:
        sup = self.start()
        preload = {
            "enabled": True,
            "fail_fast": False,
            "models": [
                {"model_id": "m", "warmup_requests": 2, "warmup_prompts": ["a|b"], "max_tokens": 4},
                {"model_id": "not-served"},
            ],
        }
        notes: list[dict[str, Any]] = []
        reply = sup.init(others=notes, preload=preload)
        report = reply["result"]["preload"]
        self.assertEqual([line["model"] for line in report], ["m", "not-served"])
        self.assertTrue(report[0]["ok"])
        self.assertEqual(report[0]["warmup_requests"], 2)
        self.assertGreaterEqual(report[0]["warmup_ms"], 0)
        self.assertFalse(report[1]["ok"])
        self.assertIn("not served", report[1]["error"])
        self.assertEqual([n["method"] for n in notes], ["model.loaded"])
        self.assertEqual(notes[0]["params"]["model"], "m")

    def test_preload_failure_with_fail_fast_fails_init(self) -> None:
        sup = self.start()
        preload = {"enabled": True, "fail_fast": True, "models": [{"model_id": "nope"}]}
        reply = sup.init(preload=preload)
        self.assertEqual(reply["error"]["code"], -32006)
        self.assertEqual(reply["error"]["data"], {"model": "nope"})

    def test_load_failure_fails_init(self) -> None:
        sup = self.start(ScriptedWorker(fail_load=True))
        reply = sup.init()
        self.assertEqual(reply["error"]["code"], -32603)
        self.assertIn("weights not found", reply["error"]["message"])


class GenerateTest(SdkTestCase):
    def test_stream_chunks_concatenate_to_the_text_under_a_split_stop_string(self) -> None:
        sup = self.start()
        sup.init()
        rid = sup.request("generate", generate_params("ab|cS|TO|Px|y", stream=True, stop=["STOP"]))
        chunks: list[dict[str, Any]] = []
        reply = sup.reply_to(rid, chunks)
        result = reply["result"]
        self.assertEqual(result["text"], "abc")
        self.assertEqual(result["finish_reason"], "stop")
        self.assertEqual(result["usage"], {"prompt_tokens": 13, "completion_tokens": 4})
        self.assertEqual([c["params"]["index"] for c in chunks], list(range(len(chunks))))
        self.assertEqual("".join(c["params"]["text"] for c in chunks), "abc")
        self.assertTrue(all(c["params"]["id"] == rid for c in chunks))

    def test_max_tokens_and_natural_end(self) -> None:
        sup = self.start()
        sup.init()
        capped = sup.request("generate", generate_params("a|b|c|d", max_tokens=2))
        self.assertEqual(
            sup.reply_to(capped)["result"],
            {
                "text": "ab",
                "finish_reason": "length",
                "usage": {"prompt_tokens": 7, "completion_tokens": 2},
            },
        )
        short = sup.request("generate", generate_params("a|b", max_tokens=5))
        self.assertEqual(sup.reply_to(short)["result"]["finish_reason"], "stop")
        pieces = sup.request("generate", generate_params("pieces:", max_tokens=4))
        result = sup.reply_to(pieces)["result"]
        self.assertEqual(result["text"], "abcdef")
        self.assertEqual(result["usage"]["completion_tokens"], 6)
        self.assertEqual(result["finish_reason"], "length")

    def test_cancel_reaches_a_blocked_engine(self) -> None:
        worker = ScriptedWorker()
        sup = self.start(worker)
        sup.init()
        rid = sup.request("generate", generate_params("block", stream=True))
        self.assertTrue(worker.started.wait(TIMEOUT_S))
        sup.notify("cancel", {"id": rid})
        result = sup.reply_to(rid)["result"]
        self.assertTrue(worker.saw_cancel.is_set())
        self.assertEqual(result["finish_reason"], "cancelled")
        self.assertEqual(result["usage"]["completion_tokens"], 0)
        self.assertEqual(result["text"], "")
        # Cancelling an id nobody holds is harmless.
        sup.notify("cancel", {"id": 999})
        ok = sup.request("generate", generate_params("fine"))
        self.assertEqual(sup.reply_to(ok)["result"]["text"], "fine")

    def test_max_concurrency_queues_and_a_queued_request_can_be_cancelled(self) -> None:
        worker = ScriptedWorker()
        worker.max_concurrency = 1
        sup = self.start(worker)
        sup.init(heartbeat_interval_ms=20)
        first = sup.request("generate", generate_params("block"))
        self.assertTrue(worker.started.wait(TIMEOUT_S))
        second = sup.request("generate", generate_params("queued"))
        hb = sup.read_until(
            lambda m: m.get("method") == "heartbeat" and m["params"]["queue_depth"] == 1
        )
        self.assertEqual(hb["params"]["inflight"], 2)
        sup.notify("cancel", {"id": second})
        self.assertEqual(sup.reply_to(second)["result"]["finish_reason"], "cancelled")
        sup.notify("cancel", {"id": first})
        self.assertEqual(sup.reply_to(first)["result"]["finish_reason"], "cancelled")


class BareWorker(dw.Worker):
    """An engine with generate only: no tokenizer, no model management."""

    def load(self, settings: dw.InitSettings) -> Sequence[str]:
        return ["bare"]

    def generate(self, request: dw.GenerateRequest) -> Iterator[str]:
        yield "x"


class ErrorsTest(SdkTestCase):
    def test_missing_callbacks_answer_method_not_found(self) -> None:
        sup = self.start(BareWorker())
        sup.init()
        for method, params in [
            ("batch_tokenize", {"texts": ["a"]}),
            ("detokenize", {"tokens": [1]}),
            ("load_model", {"model": "other"}),
        ]:
            with self.subTest(method=method):
                reply = sup.reply_to(sup.request(method, params))
                self.assertEqual(reply["error"]["code"], -32601, reply)
                self.assertEqual(reply["error"]["data"], {"method": method})
        # Without a tokenizer, usage.prompt_tokens is 0.
        g = sup.reply_to(sup.request("generate", generate_params("abc", max_tokens=1)))
        self.assertEqual(g["result"]["usage"], {"prompt_tokens": 0, "completion_tokens": 1})

    def test_errors_are_json_rpc_error_objects(self) -> None:
        sup = self.start()
        sup.init()
        cases: list[tuple[str, Any, int]] = [
            ("generate", {"max_tokens": 3}, -32602),
            ("generate", generate_params("x", max_tokens=0), -32602),
            ("generate", generate_params("x", stop="END"), -32602),
            ("generate", generate_params("x", model="nope"), -32006),
            ("generate", generate_params("boom"), -32603),
            ("generate", generate_params("refuse"), -32001),
            ("batch_tokenize", {"texts": "abc"}, -32602),
            ("detokenize", {"tokens": [1, "2"]}, -32602),
            ("load_model", {"model": "other"}, -32601),
            ("unload_model", {"model": "nope"}, -32006),
            ("warp_drive", {}, -32601),
        ]
        for method, params, code in cases:
            with self.subTest(method=method, params=params):
                reply = sup.reply_to(sup.request(method, params))
                self.assertEqual(reply["error"]["code"], code, reply)
        unknown = sup.reply_to(sup.request("generate", generate_params("x", model="nope")))
        self.assertEqual(unknown["error"]["data"], {"model": "nope"})
        boom = sup.reply_to(sup.request("generate", generate_params("boom")))
        self.assertIn("engine exploded", boom["error"]["data"]["detail"])
        # The worker lives on and tokenizes.
        t = sup.reply_to(sup.request("batch_tokenize", {"texts": ["hi", ""]}))
        self.assertEqual(t["result"], {"tokens": [[104, 105], []]})
        back = sup.reply_to(sup.request("detokenize", {"tokens": [104, 105], "model": "m"}))
        self.assertEqual(back["result"], {"text": "hi"})


class LifecycleTest(SdkTestCase):
    def test_shutdown_finishes_held_requests_then_closes_and_exits_0(self) -> None:
        worker = ScriptedWorker()
        sup = self.start(worker)
        sup.init()
        rid = sup.request("generate", generate_params("block"))
        self.assertTrue(worker.started.wait(TIMEOUT_S))
        sup.notify("shutdown")
        # Still serving cancels while draining.
        sup.notify("cancel", {"id": rid})
        self.assertEqual(sup.reply_to(rid)["result"]["finish_reason"], "cancelled")
        self._eof(sup)
        self.assertEqual(sup.wait_exit(), 0)
        self.assertTrue(worker.closed)

    @staticmethod
    def _eof(sup: Supervisor) -> None:
        """Reads to end of file: nothing but heartbeats may come after the last reply."""
        while (msg := sup.read()) is not None:
            assert msg.get("method") == "heartbeat", msg

    def test_end_of_file_cancels_held_requests_and_exits_0(self) -> None:
        worker = ScriptedWorker()
        sup = self.start(worker)
        sup.init()
        sup.request("generate", generate_params("block"))
        self.assertTrue(worker.started.wait(TIMEOUT_S))
        sup.conn.shutdown(socket.SHUT_WR)
        self.assertEqual(sup.wait_exit(), 0)
        self.assertTrue(worker.saw_cancel.is_set())

    def test_malformed_input_exits_1(self) -> None:
        bad_lines = [
            b"{not json\n",
            b"[1, 2]\n",
            b"[]\n",
            b'[{"jsonrpc": "2.0", "id": 1, "method": "generate", "params": {"prompt": "a"}}, 5]\n',
            b'{"jsonrpc": "1.0", "id": 1, "method": "generate"}\n',
            b'{"jsonrpc": "2.0", "id": -1, "method": "generate"}\n',
            b'{"jsonrpc": "2.0", "id": "a", "method": "generate"}\n',
            b'{"jsonrpc": "2.0", "method": 7}\n',
            b'{"jsonrpc": "2.0"}\n',
            b"\xff\xfe\n",
        ]
        for line in bad_lines:
            with self.subTest(line=line):
                sup = self.start()
                sup.init()
                sup.send_raw(line)
                self.assertEqual(sup.wait_exit(), 1)

    def test_oversized_message_exits_1(self) -> None:
        sup = Supervisor(ScriptedWorker(), max_message_bytes=1024)
        self.addCleanup(sup.close)
        sup.init()
        sup.send_raw(b'{"jsonrpc": "2.0", "method": "cancel", "params": {"pad": "' + b"x" * 4096)
        self.assertEqual(sup.wait_exit(), 1)

    def test_blank_and_crlf_lines_are_accepted(self) -> None:
        sup = self.start()
        sup.init()
        sup.send_raw(b"\n\r\n" + json.dumps(
            {"jsonrpc": "2.0", "id": 50, "method": "generate", "params": generate_params("ok")}
        ).encode() + b"\r\n")
        self.assertEqual(sup.reply_to(50)["result"]["text"], "ok")


class BatchingWorker(ScriptedWorker):
    """ScriptedWorker plus generate_batch: records each batch's request ids; the text is the
    prompt without its "|"s; prompt "bad" answers -32602 alone, "explode" fails the batch."""

    max_batch = 4

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[int]] = []
        self.release = threading.Event()  # prompt "hold" waits for it

    def generate_batch(
        self, requests: Sequence[dw.GenerateRequest]
    ) -> list[str | dw.Completion | dw.WorkerError]:
        self.batches.append([r.id for r in requests])
        out: list[str | dw.Completion | dw.WorkerError] = []
        for r in requests:
            if r.prompt == "explode":
                raise ValueError("batch exploded")
            if r.prompt == "hold":
                self.started.set()
                self.release.wait(TIMEOUT_S)
            if r.prompt == "bad":
                out.append(dw.InvalidParams("bad prompt"))
            elif r.prompt.startswith("len:"):
                out.append(dw.Completion(r.prompt[4:], "length", 7))
            else:
                out.append(r.prompt.replace("|", ""))
        return out


def batch_line(*members: tuple[int, dict[str, Any]]) -> bytes:
    return json.dumps(
        [{"jsonrpc": "2.0", "id": i, "method": "generate", "params": p} for i, p in members]
    ).encode() + b"\n"


class BatchTest(SdkTestCase):
    def test_without_generate_batch_each_member_is_served_alone(self) -> None:
        sup = self.start()
        sup.init()
        sup.send_raw(json.dumps([
            {"jsonrpc": "2.0", "id": 10, "method": "generate", "params": generate_params("a|b")},
            {"jsonrpc": "2.0", "id": 11, "method": "batch_tokenize", "params": {"texts": ["hi"]}},
            {"jsonrpc": "2.0", "id": 12, "method": "generate",
             "params": generate_params("c|d", stream=True)},
        ]).encode() + b"\n")
        replies = sup.replies_to((10, 11, 12))
        self.assertEqual(replies[10]["result"]["text"], "ab")
        self.assertEqual(replies[11]["result"]["tokens"], [[104, 105]])
        self.assertEqual(replies[12]["result"]["text"], "cd")

    def test_unstreamed_members_reach_generate_batch_together(self) -> None:
        worker = BatchingWorker()
        sup = self.start(worker)
        self.assertEqual(sup.init()["result"]["max_batch"], 4)
        sup.send_raw(batch_line(
            (20, generate_params("x|y")),
            (21, generate_params("bad")),
            (22, generate_params("s|t", stream=True)),
            (23, generate_params("one STOP two", stop=["STOP"])),
            (24, generate_params("len:abc")),
        ))
        others: list[dict[str, Any]] = []
        replies = sup.replies_to((20, 21, 22, 23, 24), others)
        self.assertEqual(worker.batches, [[20, 21, 23, 24]])  # the stream went to generate
        self.assertEqual(replies[20]["result"]["text"], "xy")
        self.assertEqual(replies[20]["result"]["finish_reason"], "stop")
        self.assertEqual(
            replies[20]["result"]["usage"], {"prompt_tokens": 3, "completion_tokens": 2}
        )
        self.assertEqual(replies[21]["error"]["code"], -32602)
        self.assertEqual(replies[22]["result"]["text"], "st")
        chunks = [m for m in others if m.get("method") == "generate.chunk"]
        self.assertEqual([c["params"]["id"] for c in chunks], [22, 22])
        self.assertEqual(replies[23]["result"]["text"], "one ")
        self.assertEqual(replies[23]["result"]["finish_reason"], "stop")
        self.assertEqual(replies[24]["result"]["finish_reason"], "length")
        self.assertEqual(replies[24]["result"]["usage"]["completion_tokens"], 7)
        # A lone unstreamed generate is a batch of one.
        lone = sup.request("generate", generate_params("p|q"))
        self.assertEqual(sup.reply_to(lone)["result"]["text"], "pq")
        self.assertEqual(worker.batches[-1], [lone])

    def test_an_engine_exception_answers_every_member(self) -> None:
        sup = self.start(BatchingWorker())
        sup.init()
        sup.send_raw(batch_line((30, generate_params("ok")), (31, generate_params("explode"))))
        for reply in sup.replies_to((30, 31)).values():
            error = reply["error"]
            self.assertEqual(error["code"], -32603)
            self.assertIn("batch exploded", error["data"]["detail"])
        # The worker lives on.
        again = sup.request("generate", generate_params("ok"))
        self.assertEqual(sup.reply_to(again)["result"]["text"], "ok")

    def test_members_cancelled_while_queued_are_answered_without_the_engine(self) -> None:
        worker = BatchingWorker()
        worker.max_concurrency = 1
        sup = self.start(worker)
        sup.init()
        holder = sup.request("generate", generate_params("hold"))
        self.assertTrue(worker.started.wait(TIMEOUT_S))
        sup.send_raw(batch_line((40, generate_params("a")), (41, generate_params("b"))))
        # Both wait for the engine's one slot; cancelling one leaves the other queued.
        sup.notify("cancel", {"id": 41})
        cancelled = sup.reply_to(41)["result"]
        self.assertEqual((cancelled["text"], cancelled["finish_reason"]), ("", "cancelled"))
        worker.release.set()
        replies = sup.replies_to((holder, 40))
        self.assertEqual(replies[holder]["result"]["text"], "hold")
        self.assertEqual(replies[40]["result"]["text"], "a")
        self.assertEqual(worker.batches, [[holder], [40]])


if __name__ == "__main__":
    unittest.main(verbosity=1)
