"""A local SMTP server for a development stack (scripts/up starts it unless
SB_SMTP_URL names a real one) and for tests: aiosmtpd (Debian's python3-aiosmtpd)
accepting every message and appending it to a JSON-lines file as
{"mail_from", "rcpt_tos", "data"}. Usage: smtp_sink.py PORT FILE; prints
"ready" once listening; runs until SIGTERM."""

import json
import signal
import sys
import threading

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        rec = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
               "data": envelope.content.decode("utf-8", "replace")}
        with self.lock, open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        return "250 Message accepted for delivery"


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    open(path, "a").close()
    controller = Controller(Sink(path), hostname="127.0.0.1", port=port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
