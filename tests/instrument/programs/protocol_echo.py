"""An asyncio Protocol echo server (the benchmark's too): prints its port; "block" stalls the
loop in blocking_handler; "quit" stops it (exit 0 after printing the connection count).
argv[1], if given, is the port."""

import asyncio
import sys
import time


def blocking_handler():
    time.sleep(0.3)


class Echo(asyncio.Protocol):
    seen = 0

    def connection_made(self, transport):
        Echo.seen += 1
        self.transport = transport

    def data_received(self, data):
        if data == b"block\n":
            blocking_handler()
        if data == b"quit\n":
            asyncio.get_running_loop().stop()
        self.transport.write(data)


def main():
    loop = asyncio.new_event_loop()
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = loop.run_until_complete(loop.create_server(Echo, "127.0.0.1", port))
    print("port", server.sockets[0].getsockname()[1], flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.close()
    print("connections", Echo.seen)


if __name__ == "__main__":
    main()
