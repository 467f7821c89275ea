"""TLS for the simulator: a throwaway CA (``trustme``) and a loopback server certificate.

Every Discord library hard-codes ``wss://`` for the voice gateway, so the simulator must
speak TLS with a certificate the unmodified library trusts. The libraries connect through
aiohttp, whose default client context is ``ssl.create_default_context()``; on Linux that
context loads the OpenSSL default paths, which honour the ``SSL_CERT_FILE`` and
``SSL_CERT_DIR`` environment variables. So a bot process trusts the simulator when it is
started with ``SSL_CERT_FILE=<bundle>``, where the bundle is the test CA appended to the
system CAs (:meth:`TestCA.write_bundle`). aiohttp builds its default context at import
time, so the variable must be in the environment before ``aiohttp`` is imported (set it
when launching the process, not from inside it). Libraries that pin ``certifi`` instead
honour the same file through ``REQUESTS_CA_BUNDLE``/``SSL_CERT_FILE`` only if they pass it
on themselves; none of py-cord, discord.py or nextcord use certifi for voice.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

import trustme

#: Names the server certificate is valid for: the simulator only listens on loopback.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass
class TestCA:
    """A CA made for one simulator run, and the loopback server certificate it signed."""

    __test__ = False  # not a pytest test class, despite the name

    ca: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        self.server_cert = self.ca.issue_cert(*LOOPBACK_NAMES)

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting the loopback certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only this CA (for tests in this process)."""
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate, PEM-encoded."""
        return self.ca.cert_pem.bytes()

    def write_ca(self, path: Path) -> Path:
        """Write just the CA certificate to ``path``."""
        path.write_bytes(self.ca_pem)
        return path

    def trust_in_this_process(self) -> None:
        """Test-only: make aiohttp clients already imported in *this* process trust the CA.

        ``SSL_CERT_FILE`` is the normal way, but it is read when aiohttp builds its default
        context at import, which in a test process has long happened. This adds the CA to
        that context (``aiohttp.connector._SSL_CONTEXT_VERIFIED``, a private name, hence
        the loud failure if it moves). Adding a CA only widens trust to this run's
        loopback certificate.
        """
        import aiohttp.connector

        ctx = getattr(aiohttp.connector, "_SSL_CONTEXT_VERIFIED", None)
        if not isinstance(ctx, ssl.SSLContext):
            raise RuntimeError("aiohttp has no default SSL context to extend; use SSL_CERT_FILE")
        ctx.load_verify_locations(cadata=self.ca_pem.decode())

    def write_bundle(self, path: Path) -> Path:
        """Write the system CAs plus this CA to ``path``, for ``SSL_CERT_FILE``.

        Appending keeps the bot able to reach real HTTPS hosts (if it has any reason to)
        while it also trusts the simulator.
        """
        system = b""
        cafile = ssl.get_default_verify_paths().cafile
        if cafile and Path(cafile).is_file():
            system = Path(cafile).read_bytes()
            if not system.endswith(b"\n"):
                system += b"\n"
        path.write_bytes(system + self.ca_pem)
        return path
