#!/usr/bin/env python3
"""A real third-party SMTP server for Postern's interop tests (aiosmtpd).

Two listeners on 127.0.0.1: one plain with STARTTLS required before AUTH,
one implicit TLS; both require AUTH (PLAIN/LOGIN) with the given user and
password. Every accepted message is written to OUTDIR/<n>.json (envelope)
and OUTDIR/<n>.eml (content bytes as aiosmtpd received them, dot-unstuffed).
Prints "READY <starttls-port> <implicit-port>" when listening; stops on
SIGTERM or when stdin closes.
"""
import asyncio, json, os, signal, ssl, sys, threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

cert, key, outdir, user, password = sys.argv[1:6]
counter = {"n": 0}
lock = threading.Lock()


class Handler:
    async def handle_DATA(self, server, session, envelope):
        with lock:
            counter["n"] += 1
            n = counter["n"]
        meta = {
            "mail_from": envelope.mail_from,
            "mail_options": envelope.mail_options,
            "rcpt_tos": envelope.rcpt_tos,
            "rcpt_options": envelope.rcpt_options,
            "tls": bool(session.ssl) or getattr(server, "_tls_protocol", None) is not None or server.transport.get_extra_info("ssl_object") is not None,
            "auth": session.authenticated,
        }
        data = envelope.original_content or envelope.content
        with open(os.path.join(outdir, f"{n}.eml.tmp"), "wb") as f:
            f.write(data)
        os.rename(os.path.join(outdir, f"{n}.eml.tmp"), os.path.join(outdir, f"{n}.eml"))
        with open(os.path.join(outdir, f"{n}.json.tmp"), "w") as f:
            json.dump(meta, f)
        os.rename(os.path.join(outdir, f"{n}.json.tmp"), os.path.join(outdir, f"{n}.json"))
        return "250 2.0.0 OK queued as AIO%d" % n


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and \
        auth_data.login.decode() == user and auth_data.password.decode() == password
    return AuthResult(success=ok, handled=False)


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)

starttls = Controller(Handler(), hostname="127.0.0.1", port=free_port(), tls_context=ctx,
                      require_starttls=True, authenticator=authenticator, auth_required=True,
                      decode_data=False, server_hostname="aiosmtpd.test")
implicit = Controller(Handler(), hostname="127.0.0.1", port=free_port(), ssl_context=ctx,
                      authenticator=authenticator, auth_required=True,
                      auth_require_tls=False, decode_data=False, server_hostname="aiosmtpd.test")
starttls.start()
implicit.start()
print("READY %d %d" % (starttls.port, implicit.port), flush=True)

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
stop.wait(300)
starttls.stop()
implicit.stop()
