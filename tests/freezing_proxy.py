"""A TCP proxy that can *freeze*: a database that hangs instead of refusing.

``TcpProxy.cut()`` (tests/proxy.py) is an outage the client notices at once: connections are
reset, new ones refused. A hung server, a stalled network path or a dropped-packets partition
looks different: the TCP connection stays up (or is accepted) and simply nothing comes back.
``freeze()`` does that: open connections stay open but no byte is forwarded in either
direction, and new connections are accepted but never reach the target. ``unfreeze()``
forwards again (bytes held meanwhile are delivered late, as TCP retransmission would), and
connections accepted while frozen are then connected through.
"""

import asyncio
import contextlib

from tests.proxy import TcpProxy


class FreezingTcpProxy(TcpProxy):
    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__(target_host, target_port)
        self._flowing = asyncio.Event()  # set: forwarding; clear: frozen
        self._flowing.set()
        self._closing = False

    def start(self) -> "FreezingTcpProxy":
        super().start()
        return self

    def __enter__(self) -> "FreezingTcpProxy":
        return self.start()

    def freeze(self) -> None:
        """Hold every byte from now on, and connect no new connection through."""
        self._call(self._set_flowing(False))

    def unfreeze(self) -> None:
        """Forward again, held bytes first."""
        self._call(self._set_flowing(True))

    async def _set_flowing(self, flowing: bool) -> None:
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._transports.add(writer.transport)
        await self._flowing.wait()  # accepted, but not connected through while frozen
        if self._closing or writer.transport.is_closing():
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._transports.add(up_writer.transport)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                if self._closing:
                    break
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._transports.discard(writer.transport)

    def close(self) -> None:
        self._call(self._thaw_and_cut())
        super().close()

    async def _thaw_and_cut(self) -> None:
        """Wake everything held by the freeze into a proxy that is going away."""
        self._closing = True
        self._flowing.set()
        await self._cut()
