"""A TCP relay in front of the API for the crew page's weak-signal tests (see :class:`Relay`)."""

from __future__ import annotations

import contextlib
import socket
import threading


class Relay:
    """A TCP relay on a free loopback port in front of the API. With ``hang`` set it still accepts
    connections and reads requests but never forwards them, so nothing is answered: a weak cell link.
    Clearing ``hang`` closes every connection (the phone reconnects). Threads stop on :meth:`close`."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.hang = False
        self.stopping = False
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, request: bool) -> None:
        try:
            src.settimeout(0.2)
        except OSError:  # closed by answer_again() before this thread ran
            return
        while not self.stopping:
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                break
            if request and self.hang:
                continue  # read and never forwarded: no answer comes
            try:
                dst.sendall(data)
            except OSError:
                return
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def answer_again(self) -> None:
        """Clear ``hang`` and drop every held connection."""
        self.hang = False
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            c.close()

    def close(self) -> None:
        """Stop accepting and close everything."""
        self.stopping = True
        self.answer_again()
        self.sock.close()
        self.thread.join(timeout=2)
