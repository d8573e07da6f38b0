"""`tokenreward serve`'s application on a real uvicorn server in a thread, for tests and docs."""

from __future__ import annotations

import threading
import time


class ThreadServer:
    """uvicorn serving `create_app(state)` on a free loopback port, in a thread."""

    def __init__(self, state):
        import uvicorn

        from tokenreward.serve import bind, create_app

        self.state = state
        sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(state), log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)

    def metrics(self) -> str:
        import httpx

        return httpx.get(self.url + "/metrics").text

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
