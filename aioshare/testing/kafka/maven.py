"""Apache Kafka's jars from Maven Central: one classpath directory per Kafka version, resolved once.

``kafka_classpath("4.4.0")`` runs Maven on the ``pom.xml`` beside this module the first time a
version is asked for, copying the broker (``kafka_2.13``), the tools (``kafka-tools``), the Java
client and a log4j2 binding into ``<cache>/<version>/lib``; a stamp file marks a complete copy, so
later calls (and later test runs) touch neither Maven nor the network.

The cache is ``$AIOSHARE_KAFKA_CACHE`` when set (the repository's Makefile points it at a
git-ignored ``.cache/kafka``), else ``$XDG_CACHE_HOME/aioshare/kafka`` (``~/.cache/...``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "TESTED_KAFKA_VERSIONS",
    "KafkaUnavailable",
    "cache_root",
    "find_java",
    "find_javac",
    "kafka_classpath",
]

# The newest patch of every Kafka line aioshare is tested against; the last is the default.
TESTED_KAFKA_VERSIONS: tuple[str, ...] = ("4.2.2", "4.4.0")
DEFAULT_KAFKA_VERSION = TESTED_KAFKA_VERSIONS[-1]

POM = Path(__file__).with_name("pom.xml")
_STAMP = ".complete"
RESOLVE_TIMEOUT = 900.0


class KafkaUnavailable(RuntimeError):
    """Kafka cannot be run here: no JDK, no Maven, or Maven could not resolve the jars.

    The message says what is missing and what to install.
    """


def cache_root() -> Path:
    configured = os.environ.get("AIOSHARE_KAFKA_CACHE")
    if configured:
        return Path(configured).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aioshare" / "kafka"


def _jdk_tool(name: str) -> str:
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise KafkaUnavailable(
            f"no `{name}` on PATH (nor in $JAVA_HOME/bin): running Apache Kafka needs a JDK >= 17 "
            "(e.g. `apt-get install openjdk-17-jdk-headless`) and Maven (`apt-get install maven`)"
        )
    return found


def find_java() -> str:
    """The ``java`` launcher to run Kafka with: ``$JAVA_HOME/bin/java``, else the PATH's."""
    return _jdk_tool("java")


def find_javac() -> str:
    """The ``javac`` compiler for the Java programs the tests build against ``kafka-clients``."""
    return _jdk_tool("javac")


def _find_mvn() -> str:
    found = shutil.which("mvn")
    if found is None:
        raise KafkaUnavailable(
            "no `mvn` on PATH: aioshare resolves Apache Kafka's jars from Maven Central with "
            "Maven (e.g. `apt-get install maven`), once per Kafka version"
        )
    return found


def kafka_classpath(version: str = DEFAULT_KAFKA_VERSION) -> Path:
    """The directory holding every jar Kafka ``version`` runs with (resolved on first use).

    Safe to call from several processes at once: one resolves, the others wait on a file lock.
    Raises ``KafkaUnavailable`` naming the cause when the jars cannot be had.
    """
    lib = cache_root() / version / "lib"
    if (lib / _STAMP).exists():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    with open(lib.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (lib / _STAMP).exists():
            return lib
        _resolve(version, lib)
    return lib


def _resolve(version: str, lib: Path) -> None:
    mvn = _find_mvn()
    find_java()  # fail on a missing JDK before spending a minute in Maven
    partial = lib.with_name("lib.partial")
    shutil.rmtree(partial, ignore_errors=True)
    command = [
        mvn,
        "--batch-mode",
        "--quiet",
        "--file",
        str(POM),
        "dependency:copy-dependencies",
        f"-Dkafka.version={version}",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={partial}",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=RESOLVE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise KafkaUnavailable(
            f"Maven did not resolve Kafka {version} within {RESOLVE_TIMEOUT:.0f} s"
        ) from exc
    jars = sorted(partial.glob("*.jar")) if partial.is_dir() else []
    if done.returncode != 0 or not any(j.name.startswith(f"kafka_2.13-{version}") for j in jars):
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise KafkaUnavailable(
            f"Maven could not resolve Apache Kafka {version} (org.apache.kafka:kafka_2.13:{version}) "
            f"from Maven Central; `{' '.join(command)}` exited {done.returncode}:\n{tail}"
        )
    (partial / _STAMP).write_text(f"{len(jars)} jars for Kafka {version}\n")
    shutil.rmtree(lib, ignore_errors=True)
    partial.rename(lib)
