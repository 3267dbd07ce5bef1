"""Client (blocking) against a real droverd with sim workers (docs/API.md)."""
from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

from droverd import WAIT_S, Droverd, wait_until
from drover_client import Client, ConnectionLostError, DroverConnectionError, DroverError

LONG = 100_000  # tokens: a stream that would run for minutes unless cancelled
D: Droverd


def setUpModule() -> None:
    global D
    D = Droverd(workers=2).start()


def tearDownModule() -> None:
    D.close()


class SyncClientTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = Client(D.socket, timeout=WAIT_S)

    def tearDown(self) -> None:
        self.c.close()

    def test_unary_equals_droverctl(self) -> None:
        r = self.c.generate("unary equality", max_tokens=12, seed=7)
        [ctl] = D.droverctl("generate", "unary equality", "--max-tokens", "12", "--seed", "7")
        self.assertEqual(r["text"], ctl["text"])
        self.assertEqual(r["finish_reason"], ctl["finish_reason"])
        self.assertEqual(r["usage"], ctl["usage"])

    def test_stream_equals_droverctl(self) -> None:
        with self.c.stream("stream equality", max_tokens=12, seed=9) as s:
            chunks = list(s)
        ctl = D.droverctl("generate", "stream equality", "--stream", "--max-tokens", "12", "--seed", "9")
        ctl_chunks, ctl_result = [m["params"] for m in ctl[:-1]], ctl[-1]
        self.assertEqual([c["index"] for c in chunks], list(range(len(chunks))))
        self.assertEqual("".join(c["text"] for c in chunks), "".join(c["text"] for c in ctl_chunks))
        self.assertEqual(s.result["text"], ctl_result["text"])
        self.assertEqual(s.result["text"], "".join(c["text"] for c in chunks))

    def test_close_mid_stream_cancels_at_the_worker(self) -> None:
        pids = {w["pid"] for w in D.workers()}
        s = self.c.stream("abandoned stream", max_tokens=LONG, seed=1)
        for _ in range(3):
            next(s)
        self.assertGreater(D.inflight(), 0)
        s.close()
        wait_until(lambda: D.inflight() == 0, what="the worker to end the cancelled stream")
        self.assertEqual({w["pid"] for w in D.workers()}, pids, "no worker was replaced")
        self.assertEqual(self.c.health()["status"], "ok")  # the connection is still usable

    def test_timeout_raises_timed_out_and_cancels(self) -> None:
        with self.assertRaises(DroverError) as e:
            self.c.generate("too slow", max_tokens=LONG, timeout=0.3)
        self.assertEqual(e.exception.code, -32004)
        self.assertEqual(e.exception.data["source"], "client")
        wait_until(lambda: D.inflight() == 0, what="the timed-out call to be cancelled")

    def test_invalid_params(self) -> None:
        with self.assertRaises(DroverError) as e:
            self.c.generate(5, max_tokens=2)
        self.assertEqual(e.exception.code, -32602)
        self.assertIn("prompt", e.exception.data["detail"])
        with self.assertRaises(DroverError) as e:
            self.c.generate("typo", max_token=2)
        self.assertEqual(e.exception.code, -32602)
        self.assertIn("max_token", e.exception.data["detail"])

    def test_tokenize_detokenize_health_models(self) -> None:
        tokens = self.c.tokenize("héllo")
        self.assertEqual(tokens, list("héllo".encode()))
        self.assertEqual(self.c.detokenize(tokens), "héllo")
        h = self.c.health()
        self.assertIn(h["status"], ("ok", "degraded"))
        self.assertEqual(h["workers_total"], 2)
        self.assertIn("sim", [m["id"] for m in self.c.models()])

    def test_worker_killed_mid_stream_the_stream_continues(self) -> None:
        reference = self.c.generate("failover", max_tokens=400, seed=11, cache="bypass")
        s = self.c.stream("failover", max_tokens=400, seed=11, cache="bypass")
        chunks = [next(s) for _ in range(5)]
        [busy] = [w for w in D.workers() if w["inflight"] > 0]
        D.admin("workers.kill", {"id": busy["id"], "signal": "KILL"})
        chunks += list(s)
        self.assertEqual([c["index"] for c in chunks], list(range(len(chunks))))
        self.assertEqual("".join(c["text"] for c in chunks), s.result["text"])
        self.assertEqual(s.result["text"], reference["text"])
        self.assertEqual(s.result["usage"]["completion_tokens"], 400)
        wait_until(lambda: sum(w["state"] == "ready" for w in D.workers()) == 2, what="the replacement")

    def test_slow_reader_gets_the_whole_stream_in_order(self) -> None:
        with Client(D.socket, timeout=WAIT_S, max_buffered_chunks=2) as slow:
            chunks = []
            with slow.stream("slow reader", max_tokens=30, seed=5) as s:
                for chunk in s:
                    chunks.append(chunk)
                    # Two tokens' time per chunk read, one per chunk produced: unread chunks pile up.
                    self.c.generate(f"slow reader {chunk['index']}", max_tokens=2, cache="bypass")
        self.assertEqual([c["index"] for c in chunks], list(range(len(chunks))))
        self.assertEqual("".join(c["text"] for c in chunks), s.result["text"])
        self.assertEqual(s.result["usage"]["completion_tokens"], 30)

    def test_thousand_concurrent_calls_answered_once_each(self) -> None:
        n = 1000
        with concurrent.futures.ThreadPoolExecutor(max_workers=100) as pool:
            results = list(pool.map(lambda i: self.c.generate(f"many {i}", max_tokens=2, seed=i), range(n)))
        self.assertEqual(len(results), n)
        self.assertTrue(all(r["usage"]["completion_tokens"] == 2 for r in results))
        self.assertEqual(self.c._conn._calls, {}, "every call was answered and forgotten")


class SyncClientServerLifecycleTest(unittest.TestCase):
    def test_overloaded_raises_with_retry_after(self) -> None:
        d = Droverd(workers=1, server_yaml=["max_queue: 1"]).start()
        try:
            with Client(d.socket, timeout=WAIT_S) as c:
                with c.stream("holds the only slot", max_tokens=LONG) as s:
                    next(s)
                    with self.assertRaises(DroverError) as e:
                        c.generate("refused", max_tokens=1)
                    self.assertEqual(e.exception.code, -32001)
                    self.assertIsInstance(e.exception.retry_after_ms, int)
        finally:
            d.close()

    def test_droverd_restarted_in_flight_fails_next_call_succeeds(self) -> None:
        d = Droverd(workers=1).start()
        try:
            with Client(d.socket, timeout=WAIT_S, connect_timeout=WAIT_S) as c:
                s = c.stream("interrupted", max_tokens=LONG)
                next(s)
                d.kill()
                with self.assertRaises(ConnectionLostError):
                    for _ in s:
                        pass
                d.launch()
                self.assertEqual(c.health()["workers_total"], 1)  # reconnects while droverd starts
                d.wait_ready()
                self.assertEqual(c.generate("after restart", max_tokens=3)["usage"]["completion_tokens"], 3)
        finally:
            d.close()


class SyncClientTcpRetryTest(unittest.TestCase):
    """tcp:// addresses and retry_safe (docs/API.md, "What the client libraries add"): a droverd
    SIGKILLed, or draining, with a call in flight, started again on the same TCP port."""

    def setUp(self) -> None:
        self.d = Droverd(workers=1, tcp=True, drain_timeout_ms=round(WAIT_S * 1000)).start()
        self.d.pin_tcp_port()
        self.addr = self.d.tcp_address()

    def tearDown(self) -> None:
        self.d.close()

    def call_in_thread(self, c: Client, *args, **kwargs) -> concurrent.futures.Future:
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self.addCleanup(pool.shutdown)
        future = pool.submit(c.generate, *args, **kwargs)
        wait_until(lambda: self.d.inflight() > 0, what="the call to reach the worker")
        return future

    def test_tcp_address_same_answers_as_the_socket(self) -> None:
        with Client(self.addr, timeout=WAIT_S) as tcp, Client(self.d.socket, timeout=WAIT_S) as unix:
            self.assertEqual(tcp.generate("over tcp", max_tokens=6, seed=3)["text"],
                             unix.generate("over tcp", max_tokens=6, seed=3)["text"])
            self.assertEqual(tcp.detokenize(tcp.tokenize("héllo")), "héllo")
            with tcp.stream("over tcp", max_tokens=6, seed=3) as s:
                self.assertEqual("".join(c["text"] for c in s), s.result["text"])

    def test_seeded_generate_is_resent_across_a_sigkilled_droverd(self) -> None:
        with Client(self.d.socket, timeout=WAIT_S) as unix:
            quiet = unix.generate("resent", max_tokens=1000, seed=21, cache="bypass")
        with Client(self.addr, timeout=WAIT_S, connect_timeout=WAIT_S, retry_safe=True) as c:
            future = self.call_in_thread(c, "resent", max_tokens=1000, seed=21, cache="bypass")
            self.d.kill()
            self.d.launch()
            r = future.result(timeout=WAIT_S)
            self.assertEqual(r["text"], quiet["text"])
            self.assertGreaterEqual(c.retries, 1)  # 2 when the first sending met the dying listener

    def test_unseeded_generate_is_not_resent(self) -> None:
        with Client(self.addr, timeout=WAIT_S, retry_safe=True) as c:
            future = self.call_in_thread(c, "not resent", max_tokens=LONG)
            self.d.kill()
            with self.assertRaises(ConnectionLostError):
                future.result(timeout=WAIT_S)
            self.assertEqual(c.retries, 0)

    def test_retry_is_off_by_default(self) -> None:
        with Client(self.addr, timeout=WAIT_S) as c:
            future = self.call_in_thread(c, "off by default", max_tokens=LONG, seed=4)
            self.d.kill()
            with self.assertRaises(ConnectionLostError):
                future.result(timeout=WAIT_S)
            self.assertEqual(c.retries, 0)

    def test_refused_while_draining_is_resent_whatever_the_method(self) -> None:
        with Client(self.addr, timeout=WAIT_S) as plain, \
                Client(self.addr, timeout=WAIT_S, connect_timeout=WAIT_S, retry_safe=True) as c:
            s = plain.stream("holds the drain", max_tokens=LONG)  # until it is closed
            next(s)
            c.health()  # connected before the drain: the refusal comes on this connection
            self.d.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: "shutting down" in self.d.log_text() or self.d.proc.poll() is not None,
                       what="the drain to start")
            with self.assertRaises(DroverError) as e:
                plain.generate("refused", max_tokens=2)
            self.assertEqual(e.exception.code, -32009)
            self.assertEqual(e.exception.data, {"started": False})
            pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
            self.addCleanup(pool.shutdown)
            future = pool.submit(c.generate, "unseeded, never started", max_tokens=2)
            wait_until(lambda: c.retries == 1, what="the refused call to be sent again")
            s.close()  # the drain ends
            self.assertEqual(self.d.proc.wait(timeout=WAIT_S), 0)
            self.d.launch()
            self.assertEqual(future.result(timeout=WAIT_S)["usage"]["completion_tokens"], 2)


def make_certs(d: str) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate it signed, and a CA
    that signed neither, as PEM files in `d` (openssl's command line)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=WAIT_S)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other_ca"):
        openssl("req", "-x509", *key, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                "-subj", f"/CN=drover test {ca}")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")


class SyncClientMutualTlsTest(unittest.TestCase):
    """tls:// with a client certificate against droverd's server.tls with client_ca_file."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.certs = tempfile.mkdtemp(prefix="drover-py-certs-", dir="/tmp")
        make_certs(cls.certs)
        c = lambda name: json.dumps(os.path.join(cls.certs, name))  # noqa: E731
        cls.d = Droverd(workers=1, tcp=True, server_yaml=[
            "tls:", f"  cert_file: {c('server.pem')}", f"  key_file: {c('server.key')}",
            f"  client_ca_file: {c('ca.pem')}"]).start()
        cls.addr = cls.d.tcp_address()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.d.close()
        shutil.rmtree(cls.certs, ignore_errors=True)

    def client(self, ca: str = "ca.pem", cert: str | None = "client") -> Client:
        path = lambda name: os.path.join(self.certs, name)  # noqa: E731
        return Client(self.addr, timeout=WAIT_S, connect_timeout=0.5, tls_ca_file=path(ca),
                      tls_cert_file=path(f"{cert}.pem") if cert else None,
                      tls_key_file=path(f"{cert}.key") if cert else None)

    def test_client_certificate_accepted(self) -> None:
        self.assertTrue(self.addr.startswith("tls://127.0.0.1:"))
        with self.client() as c:
            self.assertEqual(c.generate("over tls", max_tokens=6, seed=3)["usage"]["completion_tokens"], 6)
            with c.stream("over tls", max_tokens=6, seed=3) as s:
                self.assertEqual("".join(x["text"] for x in s), s.result["text"])

    def test_no_client_certificate_refused(self) -> None:
        with self.assertRaises(DroverConnectionError):  # at the handshake, or as the first call's
            with self.client(cert=None) as c:
                c.health()

    def test_wrong_ca_refused(self) -> None:
        with self.assertRaisesRegex(DroverConnectionError, "CERTIFICATE_VERIFY_FAILED"):
            self.client(ca="other_ca.pem").health()


class RetryRuleTest(unittest.TestCase):
    """Which failures retry_safe sends again (drover_client/retry.py), and address parsing."""

    def test_what_is_safe_to_repeat(self) -> None:
        from drover_client.retry import may_resend
        lost = ConnectionLostError("lost", "x")
        refused = DroverError(-32009, "Shutting down", {"started": False})
        cut_off = DroverError(-32009, "Shutting down")
        self.assertTrue(may_resend(lost, "generate", {"prompt": "p", "seed": 1, "stream": False}))
        self.assertFalse(may_resend(lost, "generate", {"prompt": "p", "stream": False}))
        self.assertFalse(may_resend(lost, "generate", {"prompt": "p", "seed": 1, "stream": True}))
        self.assertTrue(may_resend(lost, "tokenize", {"text": "t"}))
        self.assertFalse(may_resend(lost, "cancel", {"id": 1}))
        self.assertTrue(may_resend(refused, "generate", {"prompt": "unseeded"}))
        self.assertFalse(may_resend(cut_off, "tokenize", {"text": "t"}))
        self.assertFalse(may_resend(DroverError(-32001, "Overloaded"), "tokenize", {"text": "t"}))

    def test_addresses(self) -> None:
        from drover_client.transport import parse_address
        self.assertEqual(parse_address("tcp://[::1]:7000").host, "::1")
        self.assertTrue(parse_address("tls://db.example:443").tls)
        self.assertEqual(parse_address("/run/drover/drover.sock").path, "/run/drover/drover.sock")
        for bad in ("tcp://host", "tcp://host:0", "tcp://:80", "http://host:80"):
            with self.subTest(bad=bad), self.assertRaisesRegex(ValueError, bad.replace("[", r"\[")):
                Client(bad)


class ReadmeExamplesTest(unittest.TestCase):
    """The README's examples run as written (against this droverd, through DROVER_SERVER_SOCKET)."""

    def test_every_python_block_runs(self) -> None:
        package = os.path.join(os.path.dirname(__file__), "..")
        with open(os.path.join(package, "README.md")) as f:
            blocks = re.findall(r"^```python\n(.*?)^```", f.read(), re.S | re.M)
        self.assertGreaterEqual(len(blocks), 3)
        env = dict(os.environ, DROVER_SERVER_SOCKET=D.socket, PYTHONPATH=os.path.abspath(package))
        for block in blocks:
            r = subprocess.run([sys.executable, "-c", block], env=env, capture_output=True, text=True, timeout=WAIT_S)
            self.assertEqual(r.returncode, 0, f"README block failed:\n{block}\n{r.stdout}\n{r.stderr}")


class DefaultSocketTest(unittest.TestCase):
    """The default socket is droverd's: the same rule as droverctl (common/run_paths.hpp)."""

    def droverctl_default(self, env: dict[str, str]) -> str:
        r = subprocess.run([os.environ["DROVERCTL_BIN"], "--help"], env=env, capture_output=True,
                           text=True, timeout=WAIT_S)
        m = re.search(r"--socket TEXT=(\S+)", r.stdout)
        self.assertIsNotNone(m, r.stdout)
        return m.group(1)

    def python_default(self, env: dict[str, str]) -> str:
        code = "from drover_client import default_socket; print(default_socket())"
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           timeout=WAIT_S, check=True)
        return r.stdout.strip()

    def test_same_default_as_droverctl(self) -> None:
        base = {k: v for k, v in os.environ.items()
                if k not in ("DROVER_SERVER_SOCKET", "XDG_RUNTIME_DIR", "TMPDIR")}
        base["PYTHONPATH"] = os.path.join(os.path.dirname(__file__), "..")
        cases = [dict(base, XDG_RUNTIME_DIR="/run/user/7"), dict(base), dict(base, TMPDIR="/var/tmp"),
                 dict(base, DROVER_SERVER_SOCKET="/srv/d.sock")]
        for env in cases:
            with self.subTest(env={k: env.get(k) for k in ("XDG_RUNTIME_DIR", "TMPDIR", "DROVER_SERVER_SOCKET")}):
                self.assertEqual(self.python_default(env), self.droverctl_default(env))
        self.assertEqual(self.python_default(cases[0]), "/run/user/7/drover/drover.sock")


if __name__ == "__main__":
    unittest.main()
