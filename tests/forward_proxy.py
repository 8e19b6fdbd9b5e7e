"""A real local HTTP forward proxy that records what it relayed.

It takes absolute-URI requests (`POST http://host:port/path HTTP/1.1`, how a client sends plain
HTTP through a proxy) and CONNECT tunnels (how it sends HTTPS), relays each to its destination,
and keeps a record of every request: method, target and, for plain HTTP, headers and body.
One request per connection: every answer carries `Connection: close`.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Relayed:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ForwardProxy:
    relayed: list[Relayed] = field(default_factory=list)
    url: str = ""
    _server: asyncio.Server | None = None

    async def start(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            line, *lines = head.rstrip("\r\n").split("\r\n")
            method, target, _ = line.split(" ", 2)
            headers = dict(h.split(": ", 1) for h in lines if ": " in h)
            if method == "CONNECT":
                self.relayed.append(Relayed(method, target, headers, b""))
                await self._tunnel(target, reader, writer)
            else:
                length = int({k.lower(): v for k, v in headers.items()}.get("content-length", 0))
                body = await reader.readexactly(length)
                self.relayed.append(Relayed(method, target, headers, body))
                await self._forward(method, target, headers, body, writer)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def _forward(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> None:
        url = urlsplit(target)
        up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port or 80)
        kept = {k: v for k, v in headers.items()
                if not k.lower().startswith("proxy-") and k.lower() != "connection"}  # fmt: skip
        path = url.path + (f"?{url.query}" if url.query else "")
        lines = [f"{method} {path or '/'} HTTP/1.1", *(f"{k}: {v}" for k, v in kept.items()),
                 "Connection: close"]  # fmt: skip
        up_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await up_writer.drain()
        response_head = (await up_reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status, *response_lines = response_head.rstrip("\r\n").split("\r\n")
        response_lines = [h for h in response_lines if not h.lower().startswith("connection:")]
        out = "\r\n".join([status, *response_lines, "Connection: close"]) + "\r\n\r\n"
        writer.write(out.encode("latin-1") + await up_reader.read())
        await writer.drain()
        up_writer.close()
