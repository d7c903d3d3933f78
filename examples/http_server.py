"""An HTTP server whose worker processes share one listening socket.

The parent binds and listens (127.0.0.1, a free port), then starts workers
that each ``accept()`` on that same socket: the kernel hands every new
connection to one of them.  The socket reaches the workers as a Process
argument (inherited under fork, passed as a file descriptor under spawn and
forkserver).  The example then makes requests to itself, and ends the
workers by sending one ``/stop`` request per worker: a worker that answers
``/stop`` leaves its loop, so each goes to a worker still serving.

    python examples/http_server.py [--start-method fork|spawn|forkserver]
"""

import argparse
import http.client
import http.server
import os
import socket

import multiprocess as mp


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"pid {os.getpid()} served {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if self.path == "/stop":
            self.server.stopping = True

    def log_message(self, format, *args):
        pass  # keep the example's output to what it prints itself


def serve(listener):
    # An HTTPServer on the socket the parent made, without binding again.
    server = http.server.HTTPServer(listener.getsockname(), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = listener
    server.stopping = False
    while not server.stopping:
        server.handle_request()  # blocks in accept() until a connection comes
    server.server_close()


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def main(workers=3, requests=12):
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    port = listener.getsockname()[1]
    processes = [mp.Process(target=serve, args=(listener,)) for _ in range(workers)]
    for p in processes:
        p.start()
    worker_pids = {p.pid for p in processes}

    answers = [get(port, f"/page/{i}") for i in range(requests)]
    for status, body in answers[:3]:
        print(status, body.strip())
    print("...")
    served_by = {int(body.split()[1]) for _, body in answers}
    print(f"{requests} requests, {sum(s == 200 for s, _ in answers)} answered with 200")
    print("served by workers of this example:", served_by <= worker_pids)

    stops = [get(port, "/stop") for _ in processes]
    for p in processes:
        p.join(timeout=30)
    listener.close()
    print("stopped workers:", len({int(body.split()[1]) for _, body in stops}))
    print("exit codes:", [p.exitcode for p in processes])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start-method", choices=mp.get_all_start_methods())
    options = parser.parse_args()
    if options.start_method:
        mp.set_start_method(options.start_method)
    main()
