"""A real Keylime verifier (keylime 7.14.3 from PyPI, the Keylime venv) on
this machine's loopback, with its own TLS: started with `tls_dir =
generate`, it makes a CA, its server certificate and a tenant client
certificate (KEYLIME_DIR/cv_ca), as a fresh Keylime installation does.
SQLite in the same directory. Configuration files are written here, the
minimum keylime_verifier reads (the templates that keylime_upgrade_config
uses are not in the wheel).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from portage_playground.venv import ensure_keylime_venv

API = "2.5"

VERIFIER_CONF = """\
[verifier]
version = 2.5
uuid = default
ip = 127.0.0.1
port = {port}
registrar_ip = 127.0.0.1
registrar_port = {registrar_port}
enable_agent_mtls = True
tls_dir = generate
server_key = default
server_key_password =
server_cert = default
trusted_client_ca = default
client_key = default
client_key_password =
client_cert = default
trusted_server_ca = default
database_url = sqlite
database_pool_sz_ov = (5,10)
auto_migrate_db = True
num_workers = 1
exponential_backoff = True
retry_interval = 2
max_retries = 5
quote_interval = 2
request_timeout = 60.0
max_upload_size = 104857600
measured_boot_policy_name = accept-all
measured_boot_imports = []
measured_boot_evaluate = once
severity_labels = ["info", "notice", "warning", "error", "critical", "alert", "emergency"]
severity_policy = [{{"event_id": ".*", "severity_label": "emergency"}}]
ignore_tomtou_errors = False
durable_attestation_import =
persistent_store_url =
transparency_log_url =
time_stamp_authority_url =
time_stamp_authority_certs_path =
persistent_store_format = json
persistent_store_encoding =
transparency_log_sign_algo = sha256
signed_attributes =
require_allow_list_signatures = False
mode = pull

[revocations]
enabled_revocation_notifications = []
zmq_ip = 127.0.0.1
zmq_port = {zmq_port}
webhook_url =
"""

CA_CONF = """\
[ca]
version = 2.0
password = default
cert_country = US
cert_ca_name = Keylime Certificate Authority
cert_state = MA
cert_locality = Lexington
cert_organization = MITLL
cert_org_unit = 53
cert_ca_lifetime = 3650
cert_lifetime = 365
cert_bits = 2048
cert_crl_dist = http://localhost:38080/crl
"""

LOGGING_CONF = """\
[logging]
version = 2.0
[loggers]
keys = root,keylime
[handlers]
keys = consoleHandler
[formatters]
keys = formatter
[formatter_formatter]
format = %(asctime)s - %(name)s - %(levelname)s - %(message)s
[logger_root]
level = INFO
handlers = consoleHandler
[handler_consoleHandler]
class = StreamHandler
level = INFO
formatter = formatter
args = (sys.stderr,)
[logger_keylime]
level = INFO
qualname = keylime
handlers =
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KeylimeVerifier:
    def __init__(self, base: Path):
        self.base = base
        self.work = base / "work"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = base / "verifier.log"

    @property
    def tls(self) -> Path:
        return self.work / "cv_ca"

    @property
    def ca(self) -> Path:
        return self.tls / "cacert.crt"

    @property
    def client_cert(self) -> Path:
        return self.tls / "client-cert.crt"

    @property
    def client_key(self) -> Path:
        return self.tls / "client-private.pem"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> "KeylimeVerifier":
        venv = ensure_keylime_venv()
        self.work.mkdir(parents=True, exist_ok=True)
        conf = self.base / "verifier.conf"
        conf.write_text(VERIFIER_CONF.format(port=self.port, registrar_port=free_port(), zmq_port=free_port()))
        (self.base / "ca.conf").write_text(CA_CONF)
        (self.base / "logging.conf").write_text(LOGGING_CONF)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.base),
            "KEYLIME_DIR": str(self.work),
            "KEYLIME_VERIFIER_CONFIG": str(conf),
            "KEYLIME_CA_CONFIG": str(self.base / "ca.conf"),
            "KEYLIME_LOGGING_CONFIG": str(self.base / "logging.conf"),
        }
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(venv / "bin" / "keylime_verifier")],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.base, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keylime_verifier exited: {self.log.read_text()[-3000:]}")
            try:
                if self.request("GET", "/version")[0] == 200:
                    return self
            except (OSError, ssl.SSLError, FileNotFoundError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"keylime_verifier did not answer: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def policy(self, name: str) -> dict | None:
        """The runtime policy the verifier holds under ``name``, fetched back
        through its API (GET /v2.5/allowlists/NAME)."""
        status, reply = self.request("GET", f"/v{API}/allowlists/{name}")
        if status == 404:
            return None
        assert status == 200, (status, reply)
        return json.loads(reply["results"]["runtime_policy"])
