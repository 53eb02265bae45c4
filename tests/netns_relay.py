"""Carries TCP connections into another network namespace, for the tests.

The test binds a port of 127.0.0.1 in its own network namespace and hands
the listening socket to this script as its standard input; `nsenter` starts
the script in a container's network namespace, so each connection accepted
on that socket is carried on to 127.0.0.1:<port> there (argument 1). That
is how the tests reach a classic watchdog in a Docker container that has
a network of its own (`--network none`). Standard library only.
"""

import socket
import sys
import threading


def pump(source, destination):
    """Copies bytes until `source` closes, then closes `destination`'s way out."""
    try:
        while data := source.recv(65536):
            destination.sendall(data)
    except OSError:
        pass
    try:
        destination.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def main():
    port = int(sys.argv[1])
    listener = socket.socket(fileno=sys.stdin.fileno())
    while True:
        client, _ = listener.accept()
        try:
            server = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            # Not listening yet: the client sees the connection close, and retries.
            client.close()
            continue
        server.settimeout(None)
        threading.Thread(target=pump, args=(client, server), daemon=True).start()
        threading.Thread(target=pump, args=(server, client), daemon=True).start()


if __name__ == "__main__":
    main()
