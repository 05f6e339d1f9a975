"""A Tornado 6 HTTP application: GET / says hello, /block blocks the loop in
blocking_handler, /quit stops the server (exit 0)."""

import asyncio
import time

import tornado.httpserver
import tornado.netutil
import tornado.web


def blocking_handler():
    time.sleep(0.3)


class Hello(tornado.web.RequestHandler):
    def get(self):
        self.write("hello\n")


class Block(tornado.web.RequestHandler):
    def get(self):
        blocking_handler()
        self.write("blocked\n")


class Quit(tornado.web.RequestHandler):
    def get(self):
        self.write("bye\n")
        self.application.settings["done"].set()


async def main():
    done = asyncio.Event()
    app = tornado.web.Application([(r"/", Hello), (r"/block", Block), (r"/quit", Quit)], done=done)
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    print("port", port, flush=True)
    await done.wait()
    server.stop()
    print("served")


if __name__ == "__main__":
    asyncio.run(main())
