"""aiosmtpd's LMTP and lda's side by side on loopback, in one event loop in
a thread, for the tests that hold LdaLMTP to aiosmtpd's behaviour
(tests/test_lmtp_data.py: DATA; tests/test_lmtp_commands.py: the command
loop, MAIL and RCPT).  Each test sends the same bytes to both and compares
what comes back."""

import asyncio
import threading
import types

from aiosmtpd.lmtp import LMTP

from lda.lmtp.protocol import LdaLMTP

SIZE_LIMIT = 3000
HOST = "lmtp.example.org"


class ServerPair:
    """Servers "aiosmtpd" (an instance of aiosmtpd_class) and "lda", each
    with its handler from captures; ports[name] is where each listens."""

    def __init__(self, captures, aiosmtpd_class=LMTP):
        self.loop = asyncio.new_event_loop()
        self.captures = captures
        self.aiosmtpd_class = aiosmtpd_class
        self.ports = {}
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        config = types.SimpleNamespace(hostname=HOST, lmtp_max_message_size=SIZE_LIMIT,
                                       lmtp_idle_timeout=300)
        factories = {
            "aiosmtpd": lambda: self.aiosmtpd_class(
                self.captures["aiosmtpd"], hostname=HOST, ident="lda LMTP",
                data_size_limit=SIZE_LIMIT, enable_SMTPUTF8=True, decode_data=False,
                loop=self.loop),
            "lda": lambda: LdaLMTP(self.captures["lda"], config, loop=self.loop),
        }
        self.servers = []
        for name, factory in factories.items():
            server = self.loop.run_until_complete(
                self.loop.create_server(factory, "127.0.0.1", 0))
            self.servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    def close(self):
        for server in self.servers:
            server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
