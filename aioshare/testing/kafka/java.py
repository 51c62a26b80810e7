"""Compile and run small Java programs against a Kafka version's jars (drivers, cross-checks, tools).

``compile_java(sources, version)`` compiles once per content: the classes land in
``<cache>/<version>/classes/<digest>``, keyed by the sources' bytes, so an unchanged driver is not
recompiled by the next test run.  ``java_command(version, main, ...)`` builds the command line that
runs a class (a Kafka tool or a compiled driver) with Kafka's classpath and a quiet log config.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from aioshare.testing.kafka.maven import (
    DEFAULT_KAFKA_VERSION,
    KafkaUnavailable,
    find_java,
    find_javac,
    kafka_classpath,
)

__all__ = ["JavaCompileError", "compile_java", "java_command"]

# Tools and drivers log warnings and errors to stderr only; stdout stays theirs.
TOOLS_LOG_CONFIG = Path(__file__).with_name("log4j2-tools.properties")
COMPILE_TIMEOUT = 300.0


class JavaCompileError(RuntimeError):
    """javac refused a source file; the message carries javac's output."""


def compile_java(sources: Sequence[Path], version: str = DEFAULT_KAFKA_VERSION) -> Path:
    """Compile ``sources`` against Kafka ``version``'s jars; returns the classes directory."""
    lib = kafka_classpath(version)
    digest = hashlib.sha256()
    for source in sorted(sources):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    out = lib.parent / "classes" / digest.hexdigest()[:16]
    stamp = out / ".complete"
    if stamp.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return out
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        command = [
            find_javac(),
            "-nowarn",
            "-encoding",
            "UTF-8",
            "-cp",
            f"{lib}/*",
            "-d",
            str(out),
            *map(str, sources),
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise KafkaUnavailable(f"javac did not finish within {COMPILE_TIMEOUT:.0f} s") from exc
        if done.returncode != 0:
            raise JavaCompileError(f"javac failed for Kafka {version}:\n{done.stdout}{done.stderr}")
        stamp.write_text("ok\n")
    return out


def java_command(
    version: str,
    main_class: str,
    *args: str,
    classes: Path | None = None,
    heap: str = "256m",
    jvm_options: Sequence[str] = (),
) -> list[str]:
    """The command that runs ``main_class`` on Kafka ``version``'s classpath (plus ``classes``)."""
    lib = kafka_classpath(version)
    classpath = f"{lib}/*" if classes is None else f"{classes}:{lib}/*"
    return [
        find_java(),
        f"-Xmx{heap}",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        f"-Dlog4j2.configurationFile={TOOLS_LOG_CONFIG}",
        *jvm_options,
        "-cp",
        classpath,
        main_class,
        *args,
    ]
