"""TLS and SASL for the embedded broker's listeners, sans-IO: everything here is plain state.

* `ListenerSecurity.build` resolves one listener's settings from Kafka's config names (a
  ``listener.name.<listener>.`` prefixed value wins over the bare one, as in Kafka) and builds its
  TLS context from PEM files; any problem is an InvalidBrokerConfig naming the key.
* `parse_jaas_config` reads Kafka's JAAS syntax; PLAIN users are the ``user_NAME="password"``
  options of PlainLoginModule, as in Kafka's PlainServerCallbackHandler.
* `PlainServer` and `ScramServer` are the server sides of PLAIN (RFC 4616) and SCRAM-SHA-256/512
  (RFC 5802, RFC 7677), with Kafka's failure messages (PlainSaslServer, ScramSaslServer).
* `ScramCredentialStore` keeps salted credentials (salt, StoredKey, ServerKey, iterations), never
  passwords; `parse_scram_credentials` reads kafka-storage's ``--add-scram`` syntax.
* `SaslSession` is one connection's SaslServerAuthenticator: which requests are allowed before
  authentication, the handshake, the token exchange, KIP-368 re-authentication and session expiry.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import hmac
import re
import secrets
import ssl
from collections.abc import Callable, Mapping

from aioshare.broker.config import BrokerConfig, InvalidBrokerConfig
from aioshare.broker.listeners import ListenerSpec, SecurityProtocol

__all__ = [
    "SCRAM_MECHANISMS",
    "SCRAM_MECHANISM_TYPES",
    "SUPPORTED_MECHANISMS",
    "JaasModule",
    "ListenerSecurity",
    "PlainServer",
    "SaslFailure",
    "SaslSession",
    "ScramCredential",
    "ScramCredentialStore",
    "ScramServer",
    "parse_jaas_config",
    "parse_scram_credentials",
]

SCRAM_MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
# The admin API's mechanism ids (org.apache.kafka.clients.admin.ScramMechanism.type(); 0 is UNKNOWN).
SCRAM_MECHANISM_TYPES = {1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}
SUPPORTED_MECHANISMS = ("PLAIN", *SCRAM_MECHANISMS)
# ScramMechanism.minIterations (4096 for both) and ScramFormatter's upper bound used by
# AlterUserScramCredentials (UNACCEPTABLE_CREDENTIAL above it).
SCRAM_MIN_ITERATIONS = 4096
SCRAM_MAX_ITERATIONS = 16384
PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
_JAAS_FLAGS = ("required", "requisite", "sufficient", "optional")


# ------------------------------------------------------------------------------------- JAAS


@dataclasses.dataclass(frozen=True, slots=True)
class JaasModule:
    login_module: str
    flag: str
    options: dict[str, str]


_JAAS_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|([=;])|([^\s=;"]+))')


def parse_jaas_config(text: str) -> JaasModule:
    """Kafka's JaasConfig: ``<LoginModule> <flag> key=value ...;`` with exactly one module.

    Raises ValueError with Kafka's wording where Kafka has one.
    """
    tokens: list[tuple[str, str]] = []  # (kind, value): kind is "str", "word" or the symbol
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        match = _JAAS_TOKEN.match(stripped, pos)
        if match is None or match.end() == pos:
            raise ValueError(
                f"Unexpected character at position {pos} in JAAS config: {text[pos : pos + 10]!r}"
            )
        pos = match.end()
        if match.group(1) is not None:
            tokens.append(("str", re.sub(r"\\(.)", r"\1", match.group(1)[1:-1])))
        elif match.group(2) is not None:
            tokens.append((match.group(2), match.group(2)))
        else:
            tokens.append(("word", match.group(3)))
    modules: list[JaasModule] = []
    i = 0
    while i < len(tokens):
        if tokens[i][0] != "word":
            raise ValueError(f"Login module class name expected in JAAS config, got {tokens[i][1]!r}")
        module = tokens[i][1]
        if i + 1 >= len(tokens) or tokens[i + 1][1].lower() not in _JAAS_FLAGS:
            found = tokens[i + 1][1] if i + 1 < len(tokens) else "end of input"
            raise ValueError(f"Invalid control flag {found!r} in JAAS config for {module}")
        flag = tokens[i + 1][1].lower()
        i += 2
        options: dict[str, str] = {}
        while i < len(tokens) and tokens[i][0] != ";":
            if i + 2 >= len(tokens):
                raise ValueError(f"Invalid JAAS config: malformed option list for {module}")
            name, eq, value = tokens[i], tokens[i + 1], tokens[i + 2]
            if name[0] != "word" or eq[0] != "=" or value[0] not in ("word", "str"):
                raise ValueError(f"Invalid JAAS config: malformed option list for {module}")
            options[name[1]] = value[1]
            i += 3
        if i >= len(tokens):
            raise ValueError("Invalid JAAS config: the login module entry must end with ';'")
        i += 1  # the ";"
        modules.append(JaasModule(module, flag, options))
    if len(modules) != 1:
        # JaasContext.loadServerContext via JaasConfig's check.
        raise ValueError(f"JAAS config property contains {len(modules)} login modules, should be 1 module")
    return modules[0]


# ------------------------------------------------------------------------------------- SCRAM


@dataclasses.dataclass(frozen=True, slots=True)
class ScramCredential:
    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int

    @classmethod
    def from_password(
        cls, mechanism: str, password: str, iterations: int = SCRAM_MIN_ITERATIONS, salt: bytes | None = None
    ) -> ScramCredential:
        salt = salt if salt is not None else secrets.token_bytes(32)
        salted = hashlib.pbkdf2_hmac(SCRAM_MECHANISMS[mechanism], password.encode(), salt, iterations)
        return cls.from_salted_password(mechanism, salted, salt, iterations)

    @classmethod
    def from_salted_password(
        cls, mechanism: str, salted_password: bytes, salt: bytes, iterations: int
    ) -> ScramCredential:
        """What AlterUserScramCredentials carries (the client salts the password): Kafka's
        ScramControlManager.finishUpsertion keeps StoredKey and ServerKey derived from it."""
        hash_name = SCRAM_MECHANISMS[mechanism]
        client_key = hmac.digest(salted_password, b"Client Key", hash_name)
        return cls(
            salt=salt,
            stored_key=hashlib.new(hash_name, client_key).digest(),
            server_key=hmac.digest(salted_password, b"Server Key", hash_name),
            iterations=iterations,
        )


class ScramCredentialStore:
    """SCRAM credentials by (mechanism, user): what Kafka keeps in its metadata log."""

    def __init__(self) -> None:
        self._credentials: dict[tuple[str, str], ScramCredential] = {}

    def set(self, mechanism: str, user: str, credential: ScramCredential) -> None:
        if mechanism not in SCRAM_MECHANISMS:
            raise ValueError(f"Unsupported SCRAM mechanism {mechanism}")
        self._credentials[(mechanism, user)] = credential

    def add_password(
        self, mechanism: str, user: str, password: str, iterations: int = SCRAM_MIN_ITERATIONS
    ) -> None:
        if not SCRAM_MIN_ITERATIONS <= iterations <= SCRAM_MAX_ITERATIONS:
            raise ValueError(
                f"iterations must be between {SCRAM_MIN_ITERATIONS} and {SCRAM_MAX_ITERATIONS}, got {iterations}"
            )
        self.set(mechanism, user, ScramCredential.from_password(mechanism, password, iterations))

    def delete(self, mechanism: str, user: str) -> bool:
        return self._credentials.pop((mechanism, user), None) is not None

    def get(self, mechanism: str, user: str) -> ScramCredential | None:
        return self._credentials.get((mechanism, user))

    def describe(self) -> dict[str, dict[str, int]]:
        """user -> {mechanism: iterations} (DescribeUserScramCredentials' view)."""
        result: dict[str, dict[str, int]] = {}
        for (mechanism, user), credential in sorted(self._credentials.items()):
            result.setdefault(user, {})[mechanism] = credential.iterations
        return result


_ADD_SCRAM = re.compile(r"\s*(SCRAM-SHA-(?:256|512))\s*=\s*\[(.*)\]\s*", re.DOTALL)
_SCRAM_OPTION = re.compile(r'\s*([a-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,]*)\s*(?:,|$)')


def parse_scram_credentials(text: str) -> list[tuple[str, str, str, int]]:
    """``MECH=[name=U,password=P(,iterations=N)];...`` (kafka-storage --add-scram entries, ';'-separated).

    Returns (mechanism, user, password, iterations); raises ValueError on a malformed entry.
    """
    result = []
    for number, entry in enumerate(filter(str.strip, text.split(";")), start=1):
        match = _ADD_SCRAM.fullmatch(entry)
        if match is None:
            # Not the entry itself: it holds a password.
            raise ValueError(
                f"entry {number} is not a SCRAM credential: expected "
                "SCRAM-SHA-256=[name=USER,password=PASSWORD] or SCRAM-SHA-512=[...], ';'-separated"
            )
        mechanism, body = match.groups()
        options: dict[str, str] = {}
        pos = 0
        while pos < len(body):
            option = _SCRAM_OPTION.match(body, pos)
            if option is None or option.end() == pos:
                raise ValueError(f"malformed option list in a {mechanism} credential")
            value = option.group(2).strip()
            if value.startswith('"') and value.endswith('"') and len(value) >= 2:
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            options[option.group(1)] = value
            pos = option.end()
        unknown = set(options) - {"name", "password", "iterations"}
        if unknown:
            raise ValueError(f"unknown SCRAM credential option(s) {sorted(unknown)} for {mechanism}")
        if not options.get("name") or "password" not in options:
            raise ValueError(f"a SCRAM credential needs name= and password= ({mechanism})")
        try:
            iterations = int(options.get("iterations", SCRAM_MIN_ITERATIONS))
        except ValueError:
            raise ValueError(f"iterations is not a number: {options['iterations']}") from None
        if not SCRAM_MIN_ITERATIONS <= iterations <= SCRAM_MAX_ITERATIONS:
            raise ValueError(
                f"iterations must be between {SCRAM_MIN_ITERATIONS} and {SCRAM_MAX_ITERATIONS}, got {iterations}"
            )
        result.append((mechanism, options["name"], options["password"], iterations))
    return result


# ------------------------------------------------------------------------------------- SASL


class SaslFailure(Exception):
    """Authentication failed. `visible`: Kafka's SaslAuthenticationException, whose message the
    client sees; otherwise (a SaslException) the client gets Kafka's generic message."""

    def __init__(self, message: str, *, visible: bool) -> None:
        super().__init__(message)
        self.visible = visible


class PlainServer:
    """PlainSaslServer: one message, ``[authzid] NUL authcid NUL passwd``."""

    mechanism = "PLAIN"

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = users
        self.complete = False
        self.principal: str | None = None

    def evaluate(self, token: bytes) -> bytes:
        if self.complete:
            raise SaslFailure("Unexpected challenge in Sasl server state COMPLETE", visible=False)
        text = token.decode("utf-8", errors="replace")
        tokens = text.split("\0", 3)
        if len(tokens) != 3:
            raise SaslFailure(
                f"Invalid SASL/PLAIN response: expected 3 tokens, got {len(tokens)}", visible=True
            )
        authzid, username, password = tokens
        if not username:
            raise SaslFailure("Authentication failed: username not specified", visible=True)
        if not password:
            raise SaslFailure("Authentication failed: password not specified", visible=True)
        expected = self._users.get(username)
        # Compared in constant time; an unknown user costs the same as a wrong password.
        if not hmac.compare_digest((expected or "\0").encode(), password.encode()) or expected is None:
            raise SaslFailure("Authentication failed: Invalid username or password", visible=True)
        if authzid and authzid != username:
            raise SaslFailure(
                "Authentication failed: Client requested an authorization id that is different from username",
                visible=True,
            )
        self.complete = True
        self.principal = username
        return b""


# ScramMessages' patterns: saslname, printable nonce, base64, extensions.
_SCRAM_CLIENT_FIRST = re.compile(
    r"n,(?:a=(?P<authzid>(?:[\x01-\x2b\x2d-\x3c\x3e-\x7f]|=2C|=3D)+))?,"
    r"(?P<bare>n=(?P<saslname>(?:[\x01-\x2b\x2d-\x3c\x3e-\x7f]|=2C|=3D)+),"
    r"r=(?P<nonce>[\x21-\x2b\x2d-\x7e]+)(?P<extensions>(?:,[A-Za-z]=[^,]*)*))"
)
_SCRAM_CLIENT_FINAL = re.compile(
    r"(?P<without_proof>c=(?P<channel>[A-Za-z0-9+/]*={0,2}),r=(?P<nonce>[\x21-\x2b\x2d-\x7e]+)"
    r"(?:,[A-Za-z]=[^,]*)*),p=(?P<proof>[A-Za-z0-9+/]+={0,2})"
)
_GS2_HEADER_B64 = base64.b64encode(b"n,,").decode()


class ScramServer:
    """ScramSaslServer: client-first → server-first → client-final → server-final."""

    def __init__(self, mechanism: str, lookup: Callable[[str, str], ScramCredential | None]) -> None:
        self.mechanism = mechanism
        self._hash = SCRAM_MECHANISMS[mechanism]
        self._lookup = lookup
        self._state = "first"
        self.complete = False
        self.principal: str | None = None
        self._credential: ScramCredential | None = None
        self._auth_prefix = ""
        self._nonce = ""

    def evaluate(self, token: bytes) -> bytes:
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            self._state = "failed"
            raise SaslFailure("Invalid SCRAM message: not UTF-8", visible=False) from None
        if self._state == "first":
            return self._first(text)
        if self._state == "final":
            return self._final(text)
        raise SaslFailure(f"Unexpected challenge in Sasl server state {self._state.upper()}", visible=False)

    def _first(self, text: str) -> bytes:
        self._state = "failed"
        match = _SCRAM_CLIENT_FIRST.fullmatch(text)
        if match is None:
            raise SaslFailure(f"Invalid SCRAM client first message format: {text}", visible=False)
        username = match["saslname"].replace("=2C", ",").replace("=3D", "=")
        credential = self._lookup(self.mechanism, username)
        if credential is None:
            raise SaslFailure("Authentication failed: Invalid user credentials", visible=False)
        authzid = match["authzid"]
        if authzid and authzid.replace("=2C", ",").replace("=3D", "=") != username:
            raise SaslFailure(
                "Authentication failed: Client requested an authorization id that is different from username",
                visible=True,
            )
        if credential.iterations < SCRAM_MIN_ITERATIONS:
            raise SaslFailure(
                f"Iterations {credential.iterations} is less than the minimum {SCRAM_MIN_ITERATIONS} "
                f"for {self.mechanism}",
                visible=False,
            )
        self._nonce = match["nonce"] + secrets.token_urlsafe(24)
        server_first = (
            f"r={self._nonce},s={base64.b64encode(credential.salt).decode()},i={credential.iterations}"
        )
        self._credential = credential
        self._auth_prefix = f"{match['bare']},{server_first},"
        self.principal = username
        self._state = "final"
        return server_first.encode()

    def _final(self, text: str) -> bytes:
        self._state = "failed"
        credential = self._credential
        assert credential is not None
        match = _SCRAM_CLIENT_FINAL.fullmatch(text)
        if match is None:
            raise SaslFailure(f"Invalid SCRAM client final message format: {text}", visible=False)
        if match["nonce"] != self._nonce:
            raise SaslFailure("Invalid client nonce in the final client message.", visible=False)
        if match["channel"] != _GS2_HEADER_B64:
            raise SaslFailure("Invalid channel binding in the final client message.", visible=False)
        auth_message = (self._auth_prefix + match["without_proof"]).encode()
        proof = base64.b64decode(match["proof"])
        signature = hmac.digest(credential.stored_key, auth_message, self._hash)
        if len(proof) != len(signature):
            raise SaslFailure("Invalid client credentials", visible=False)
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.new(self._hash, client_key).digest(), credential.stored_key):
            raise SaslFailure("Invalid client credentials", visible=False)
        server_signature = hmac.digest(credential.server_key, auth_message, self._hash)
        self._state = "complete"
        self.complete = True
        return f"v={base64.b64encode(server_signature).decode()}".encode()


MechanismServer = PlainServer | ScramServer


# ------------------------------------------------------------------------------------- listeners


class ClientAuth(enum.StrEnum):
    REQUIRED = "required"
    REQUESTED = "requested"
    NONE = "none"


@dataclasses.dataclass(frozen=True, slots=True)
class ListenerSecurity:
    """Everything one listener needs to accept and authenticate connections."""

    spec: ListenerSpec
    ssl_context: ssl.SSLContext | None
    client_auth: ClientAuth
    mechanisms: tuple[str, ...]
    plain_users: Mapping[str, str]
    scram: ScramCredentialStore
    # connections.max.reauth.ms by mechanism (0 = sessions do not expire).
    reauth_ms: Mapping[str, int]
    failed_authentication_delay_ms: int

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def protocol(self) -> SecurityProtocol:
        return self.spec.protocol

    @classmethod
    def build(cls, config: BrokerConfig, spec: ListenerSpec, scram: ScramCredentialStore) -> ListenerSecurity:
        prefix = f"listener.name.{spec.name.lower()}."

        def lookup(key: str) -> tuple[str, str | None]:
            """(the key that set it, value) with the listener-prefixed name first."""
            value = config.listener_value(spec.name, key)
            if value is not None:
                return prefix + key, value
            found = config.get(key)
            text = ",".join(found) if isinstance(found, tuple) else str(found)
            return key, text or None

        ssl_context = None
        client_auth = ClientAuth(lookup("ssl.client.auth")[1] or "none")
        if spec.protocol.uses_tls:
            ssl_context = _server_ssl_context(lookup, client_auth, spec)
        mechanisms: tuple[str, ...] = ()
        plain_users: dict[str, str] = {}
        reauth: dict[str, int] = {}
        if spec.protocol.uses_sasl:
            key, raw = lookup("sasl.enabled.mechanisms")
            mechanisms = tuple(m.strip() for m in (raw or "").split(",") if m.strip())
            if not mechanisms:
                raise InvalidBrokerConfig(
                    key, f"{key} is empty: listener {spec.name} ({spec.protocol}) needs a mechanism"
                )
            for mechanism in mechanisms:
                if mechanism not in SUPPORTED_MECHANISMS:
                    raise InvalidBrokerConfig(
                        key,
                        f"Invalid value {raw} for configuration {key}: the embedded broker supports "
                        f"{', '.join(SUPPORTED_MECHANISMS)}, not {mechanism}",
                    )
            for mechanism in mechanisms:
                jaas_key = f"{prefix}{mechanism.lower()}.sasl.jaas.config"
                jaas = config.listener_value(spec.name, f"{mechanism.lower()}.sasl.jaas.config")
                if mechanism == "PLAIN":
                    if jaas is None:
                        raise InvalidBrokerConfig(
                            jaas_key,
                            f"Could not find a 'KafkaServer' or '{spec.name.lower()}.KafkaServer' entry in the "
                            f"JAAS configuration: set {jaas_key} to "
                            f'"{PLAIN_MODULE} required user_NAME=\\"PASSWORD\\";"',
                        )
                    module = _jaas(jaas_key, jaas)
                    if module.login_module != PLAIN_MODULE:
                        raise InvalidBrokerConfig(
                            jaas_key, f"{jaas_key}: PLAIN needs {PLAIN_MODULE}, not {module.login_module}"
                        )
                    plain_users = {
                        name[len("user_") :]: value
                        for name, value in module.options.items()
                        if name.startswith("user_")
                    }
                elif jaas is not None:
                    module = _jaas(jaas_key, jaas)
                    if module.login_module != SCRAM_MODULE:
                        raise InvalidBrokerConfig(
                            jaas_key,
                            f"{jaas_key}: {mechanism} needs {SCRAM_MODULE}, not {module.login_module}",
                        )
                reauth[mechanism] = _reauth_ms(config, spec.name, mechanism)
        return cls(
            spec=spec,
            ssl_context=ssl_context,
            client_auth=client_auth,
            mechanisms=mechanisms,
            plain_users=plain_users,
            scram=scram,
            reauth_ms=reauth,
            failed_authentication_delay_ms=config.connection_failed_authentication_delay_ms,
        )

    def new_session(self) -> SaslSession | None:
        return SaslSession(self) if self.protocol.uses_sasl else None

    def mechanism_server(self, mechanism: str) -> MechanismServer:
        if mechanism == "PLAIN":
            return PlainServer(self.plain_users)
        return ScramServer(mechanism, self.scram.get)


def _reauth_ms(config: BrokerConfig, listener: str, mechanism: str) -> int:
    for key in (f"{mechanism.lower()}.connections.max.reauth.ms", "connections.max.reauth.ms"):
        value = config.listener_value(listener, key)
        if value is not None:
            return int(value)
    return config.connections_max_reauth_ms


def _jaas(key: str, text: str) -> JaasModule:
    try:
        return parse_jaas_config(text)
    except ValueError as exc:
        # Not the value itself: it holds passwords.
        raise InvalidBrokerConfig(key, f"Invalid {key}: {exc}") from None


def _server_ssl_context(
    lookup: Callable[[str], tuple[str, str | None]], client_auth: ClientAuth, spec: ListenerSpec
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    type_key, store_type = lookup("ssl.keystore.type")
    location_key, location = lookup("ssl.keystore.location")
    if location is None:
        raise InvalidBrokerConfig(
            location_key,
            f"listener {spec.name} ({spec.protocol}) needs a key store: set {location_key} "
            "(a PEM file with the private key and the certificate chain) and ssl.keystore.type=PEM",
        )
    if (store_type or "JKS").upper() != "PEM":
        raise InvalidBrokerConfig(
            type_key,
            f"{type_key}={store_type}: the embedded broker reads PEM key stores only (set {type_key}=PEM)",
        )
    password_key, store_password = lookup("ssl.keystore.password")
    if store_password is not None:
        # DefaultSslEngineFactory.FileBasedPemStore's rule.
        raise InvalidBrokerConfig(
            password_key,
            "SSL key store password cannot be specified with PEM format, only key password may be specified",
        )
    _, key_password = lookup("ssl.key.password")
    try:
        context.load_cert_chain(location, password=key_password)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidBrokerConfig(
            location_key, f"Failed to load SSL keystore {location} of type PEM ({location_key}): {exc}"
        ) from None
    trust_type_key, trust_type = lookup("ssl.truststore.type")
    trust_key, trust_location = lookup("ssl.truststore.location")
    certs_key, trust_certificates = lookup("ssl.truststore.certificates")
    if trust_location is not None or trust_certificates is not None:
        if (trust_type or "JKS").upper() != "PEM":
            raise InvalidBrokerConfig(
                trust_type_key,
                f"{trust_type_key}={trust_type}: the embedded broker reads PEM trust stores only (set {trust_type_key}=PEM)",
            )
        try:
            if trust_location is not None:
                context.load_verify_locations(cafile=trust_location)
            if trust_certificates is not None:
                context.load_verify_locations(cadata=trust_certificates)
        except (OSError, ssl.SSLError, ValueError) as exc:
            where = trust_key if trust_location is not None else certs_key
            raise InvalidBrokerConfig(
                where, f"Failed to load SSL trust store of type PEM ({where}): {exc}"
            ) from None
    elif client_auth is not ClientAuth.NONE:
        context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    context.verify_mode = {
        ClientAuth.REQUIRED: ssl.CERT_REQUIRED,
        ClientAuth.REQUESTED: ssl.CERT_OPTIONAL,
        ClientAuth.NONE: ssl.CERT_NONE,
    }[client_auth]
    return context


# ------------------------------------------------------------------------------------- the flow


class SaslState(enum.Enum):
    HANDSHAKE_OR_VERSIONS = "HANDSHAKE_OR_VERSIONS_REQUEST"
    HANDSHAKE = "HANDSHAKE_REQUEST"
    AUTHENTICATE = "AUTHENTICATE"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"


API_VERSIONS = 18
SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a request on a SASL listener: serve it (normal dispatch), run it through
    the session (handshake, authenticate), or close the connection without answering."""

    action: str  # "serve", "handshake", "authenticate", "close"
    reason: str = ""


SERVE = Verdict("serve")


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """The outcome of a handshake or token: error code and message for the response, the
    response token, the session lifetime to report, and whether to close after answering."""

    error_code: int = 0
    error_message: str | None = None
    auth_bytes: bytes = b""
    session_lifetime_ms: int = 0
    close: bool = False


class SaslSession:
    """SaslServerAuthenticator for one connection (sans-IO; the server does the I/O)."""

    def __init__(self, listener: ListenerSecurity) -> None:
        self._listener = listener
        self.state = SaslState.HANDSHAKE_OR_VERSIONS
        self.raw_tokens = False  # SaslHandshake v0: the next frames are bare SASL tokens
        self.mechanism: str | None = None
        self.principal: str | None = None
        self._server: MechanismServer | None = None
        self._reauthenticating = False
        self._client_supports_reauth = False
        self._bad_reauth_mechanism: str | None = None
        self.expires_at_ns: int | None = None

    @property
    def authenticated(self) -> bool:
        return self.state is SaslState.COMPLETE

    def check(self, api_key: int, now_ns: int) -> Verdict:
        """Before a (decoded-header) request is handled: may it be, and by whom?"""
        state = self.state
        if state is SaslState.COMPLETE:
            if api_key == SASL_HANDSHAKE and self._client_supports_reauth:
                return Verdict("handshake")  # KIP-368 re-authentication begins
            if self.expires_at_ns is not None and now_ns >= self.expires_at_ns:
                return Verdict(
                    "close",
                    "the SASL session expired (connections.max.reauth.ms) and was not re-authenticated",
                )
            return SERVE
        if state in (SaslState.HANDSHAKE_OR_VERSIONS, SaslState.HANDSHAKE):
            if api_key == SASL_HANDSHAKE:
                return Verdict("handshake")
            if (
                api_key == API_VERSIONS
                and state is SaslState.HANDSHAKE_OR_VERSIONS
                and not self._reauthenticating
            ):
                self.state = SaslState.HANDSHAKE
                return SERVE
            if api_key == API_VERSIONS:
                return Verdict(
                    "close",
                    f"Unexpected ApiVersions request received during SASL authentication state {state.value}",
                )
            reason = f"Unexpected Kafka request of type {_api_name(api_key)} during SASL handshake."
            if state is SaslState.HANDSHAKE_OR_VERSIONS and not self._reauthenticating:
                reason = (
                    "Invalid request, potential reasons: kafka client configured with the wrong security "
                    f"protocol, it does not support KIP-43 or it is not a kafka client. ({reason})"
                )
            self.state = SaslState.FAILED
            return Verdict("close", reason)
        if state is SaslState.AUTHENTICATE:
            if api_key == SASL_AUTHENTICATE:
                return Verdict("authenticate")
            self.state = SaslState.FAILED
            return Verdict(
                "close", f"Unexpected Kafka request of type {_api_name(api_key)} during SASL authentication."
            )
        return Verdict("close", "SASL authentication failed earlier on this connection")

    def handshake(self, mechanism: str, version: int) -> tuple[Step, tuple[str, ...]]:
        """SaslHandshake: (outcome, the enabled mechanisms to list in the response)."""
        enabled = self._listener.mechanisms
        if self.state is SaslState.COMPLETE:
            # Re-authentication: the new exchange must use the same mechanism.
            self._reauthenticating = True
        if mechanism not in enabled:
            self.state = SaslState.FAILED
            return Step(error_code=_UNSUPPORTED_SASL_MECHANISM, close=True), enabled
        if self._reauthenticating and mechanism != self.mechanism:
            self._bad_reauth_mechanism = (
                f"SASL mechanism '{mechanism}' requested by client is not supported for re-authentication "
                f"of mechanism '{self.mechanism}'"
            )
        else:
            self.mechanism = mechanism
            self._server = self._listener.mechanism_server(mechanism)
        self.raw_tokens = version == 0
        self.state = SaslState.AUTHENTICATE
        return Step(), enabled

    def authenticate(self, token: bytes, version: int, now_ns: int) -> Step:
        """One SaslAuthenticate (or, after a v0 handshake, one bare token)."""
        if version > 0:
            self._client_supports_reauth = True
        if self._bad_reauth_mechanism is not None:
            self.state = SaslState.FAILED
            return Step(_SASL_AUTHENTICATION_FAILED, self._bad_reauth_mechanism, close=True)
        server = self._server
        assert server is not None and self.mechanism is not None
        what = "re-authentication" if self._reauthenticating else "authentication"
        try:
            response = server.evaluate(token)
            if server.complete and self._reauthenticating and server.principal != self.principal:
                raise SaslFailure(
                    f"Cannot change principals during re-authentication from User.{self.principal}: "
                    f"User.{server.principal}",
                    visible=True,
                )
        except SaslFailure as exc:
            self.state = SaslState.FAILED
            message = (
                str(exc)
                if exc.visible
                else f"Authentication failed during {what} due to invalid credentials with SASL mechanism {self.mechanism}"
            )
            return Step(_SASL_AUTHENTICATION_FAILED, message, close=True)
        if not server.complete:
            return Step(auth_bytes=response)
        self.principal = server.principal
        self.state = SaslState.COMPLETE
        self.raw_tokens = False
        self._reauthenticating = False
        lifetime = max(0, self._listener.reauth_ms.get(self.mechanism, 0))
        self.expires_at_ns = now_ns + lifetime * 1_000_000 if lifetime > 0 else None
        return Step(auth_bytes=response, session_lifetime_ms=lifetime)


_UNSUPPORTED_SASL_MECHANISM = 33
_SASL_AUTHENTICATION_FAILED = 58


def _api_name(api_key: int) -> str:
    from aioshare.protocol.messages import REQUESTS

    request = REQUESTS.get(api_key)
    if request is None:
        return f"API key {api_key}"
    # Kafka prints ApiKeys' enum names (METADATA, SHARE_FETCH...).
    name = request.__name__.removesuffix("Request")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()
