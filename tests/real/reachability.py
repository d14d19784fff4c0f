"""Stand in for the internet that SkyPilot 0.14.1 probes before it answers /serve/status.

`sky.serve.server.impl.status` first calls `backend_utils.check_network_connection`,
which sends `HEAD https://8.8.8.8` and `HEAD https://1.1.1.1` (requests, 0.5 s then longer,
three rounds) and refuses with "Failed to refresh services status due to network error."
when every one fails to connect. A machine without internet (a CI runner, a test sandbox)
never gets past it, although nothing of the services' records needs the network.

This is an HTTPS proxy (CONNECT) on 127.0.0.1 that answers for those two addresses itself:
it ends the tunnel's TLS, with a certificate for both IPs signed by a CA of its own, and
answers HEAD with 204. A tunnel to any other host is passed through as a proxy would (so
a server with internet keeps it). While the file DIR/reachability.down exists, the two
addresses are refused (403), which SkyPilot sees as a network that is down: a test switches
it to pin that answer. A SkyPilot server started with

    HTTPS_PROXY=http://127.0.0.1:PORT  NO_PROXY=127.0.0.1,localhost
    REQUESTS_CA_BUNDLE=DIR/ca-bundle.pem   (certifi's bundle + this CA)

then passes its check the way it does on a host with internet: the HEAD succeeds.

    python reachability.py DIR [--forever]

writes DIR/ca-bundle.pem and DIR/reachability.port, prints the port on a line of its own
once listening, and serves until its standard input closes (so it never outlives the
process that started it), or with --forever until it is killed.
"""
import datetime
import ipaddress
import os
import socket
import ssl
import sys
import threading

PROBED = {'8.8.8.8', '1.1.1.1'}


def make_certs(out_dir: str) -> tuple:
    """A CA, and a server certificate for the probed IPs signed by it: (cert, key) paths."""
    # pylint: disable=import-outside-toplevel
    import certifi
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                            'skypilot-host test reachability CA')])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, '8.8.8.8')]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(ip)) for ip in sorted(PROBED)]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    cert_path = os.path.join(out_dir, 'reachability-cert.pem')
    key_path = os.path.join(out_dir, 'reachability-key.pem')
    with open(cert_path, 'wb') as f:
        f.write(leaf.public_bytes(pem))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'wb') as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(certifi.where(), 'rb') as f:
        bundle = f.read()
    with open(os.path.join(out_dir, 'ca-bundle.pem'), 'wb') as f:
        f.write(bundle + b'\n' + ca.public_bytes(pem))
    return cert_path, key_path


def read_head(conn) -> bytes:
    data = b''
    while b'\r\n\r\n' not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def pipe(src, dst) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def tunnel(conn, target: str) -> None:
    """A plain CONNECT tunnel to `target` (host:port)."""
    host, _, port = target.rpartition(':')
    try:
        upstream = socket.create_connection((host.strip('[]'), int(port)), timeout=10)
    except (OSError, ValueError):
        conn.sendall(b'HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n')
        return
    with upstream:
        conn.sendall(b'HTTP/1.1 200 Connection established\r\n\r\n')
        conn.settimeout(None)
        upstream.settimeout(None)
        back = threading.Thread(target=pipe, args=(upstream, conn), daemon=True)
        back.start()
        pipe(conn, upstream)
        back.join()


def serve_client(conn, tls: ssl.SSLContext, down_flag: str) -> None:
    with conn:
        conn.settimeout(10)
        try:
            request = read_head(conn)
            line = request.split(b'\r\n', 1)[0].decode('latin-1')
            parts = line.split()
            if len(parts) != 3 or parts[0] != 'CONNECT':
                conn.sendall(b'HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n')
                return
            host = parts[1].rsplit(':', 1)[0]
            if host not in PROBED:
                tunnel(conn, parts[1])
                return
            if os.path.exists(down_flag):
                conn.sendall(b'HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n')
                return
            conn.sendall(b'HTTP/1.1 200 Connection established\r\n\r\n')
            with tls.wrap_socket(conn, server_side=True) as inner:
                read_head(inner)
                inner.sendall(b'HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n')
        except (OSError, ssl.SSLError):
            return


def main() -> int:
    out_dir = sys.argv[1]
    forever = '--forever' in sys.argv[2:]
    down_flag = os.path.join(out_dir, 'reachability.down')
    cert, key = make_certs(out_dir)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(('127.0.0.1', 0))
    listener.listen(64)

    def accept_loop():
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve_client, args=(conn, tls, down_flag),
                             daemon=True).start()

    port = listener.getsockname()[1]
    with open(os.path.join(out_dir, 'reachability.port'), 'w', encoding='utf-8') as f:
        f.write(f'{port}\n')
    if forever:
        print(port, flush=True)
        accept_loop()
        return 0
    threading.Thread(target=accept_loop, daemon=True).start()
    print(port, flush=True)
    sys.stdin.read()
    return 0


if __name__ == '__main__':
    sys.exit(main())
