"""A Warden plugin in Python, built with componentize-py against the `warden:plugin`
world (its WIT is in `wit/`).

It mirrors what the Rust fixtures show, message by message (UTF-8 text):

    echo:TEXT          answers TEXT
    incr / get         counts in durable state (kept across restarts) / answers the count
    whoami             answers "PATH incarnation N"
    send:PATH:TEXT     sends TEXT to PATH, answers "sent"
    call:PATH:TEXT     calls PATH with TEXT, answers its reply
    busy:MS            works MS milliseconds, beating its heartbeat, answers "beat N times"
    crash              raises an exception: the host sees a trap with its message
    exit:error:TEXT    asks to exit with error(TEXT) once this message is handled

A Python exception escaping an export is reported to the host with `abort-reason`
before the guest traps, so the supervisor's exit reason carries the exception, not a
bare `unreachable`.
"""

import re
import time
import traceback

from wit_world import exports
from wit_world.imports import runtime, state, types
from componentize_py_types import Err

COUNT = "count"


def _reported(f):
    """Wraps an export: a host error escaping it is told as text, and an exception is
    told to the host (`abort-reason`) before the guest traps with it."""

    def wrapper(*args):
        try:
            return f(*args)
        except Err as e:
            # The contract's error (a start failure, an application error) is a string:
            # a host error raised by an import is told as its text.
            if isinstance(e.value, str):
                raise
            raise Err(describe(e.value)) from None
        except BaseException as e:
            last = traceback.format_exception_only(type(e), e)[-1].strip()
            runtime.abort_reason(f"python: {last}")
            raise

    return wrapper


def describe(error) -> str:
    """A host error's readable text, named as the contract names it: `timeout`,
    `not_allowed: root/x`, `quota_exceeded: ...` (a `MessageError_NotAllowed` or a
    `StateError_QuotaExceeded` from the bindings)."""
    kind = type(error).__name__.split("_", 1)[-1]
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()
    value = getattr(error, "value", None)
    return name if value is None else f"{name}: {value}"


class Guest(exports.Guest):
    count = 0
    ctx = None

    @_reported
    def init(self, ctx: types.Context) -> None:
        stored = state.get(COUNT)
        Guest.count = int(stored.decode()) if stored is not None else 0
        Guest.ctx = ctx
        runtime.log(
            types.LogLevel.INFO,
            f"incarnation {ctx.incarnation} of {ctx.path} starts at {Guest.count}",
        )

    @_reported
    def handle(self, msg: types.Envelope) -> bytes:
        try:
            text = msg.payload.decode()
        except UnicodeDecodeError:
            raise Err("messages are UTF-8 text")
        if text == "incr":
            state.set(COUNT, str(Guest.count + 1).encode())
            Guest.count += 1
            return str(Guest.count).encode()
        if text == "get":
            return str(Guest.count).encode()
        if text == "whoami":
            return f"{runtime.self_path()} incarnation {Guest.ctx.incarnation}".encode()
        if text == "crash":
            raise RuntimeError(f"asked to crash at {Guest.count}")
        if text.startswith("echo:"):
            return text[len("echo:"):].encode()
        if text.startswith("exit:error:"):
            runtime.exit(types.ExitRequest_Error(text[len("exit:error:"):]))
            return b"exiting"
        if text.startswith("busy:"):
            ms = text[len("busy:"):]
            if not ms.isdigit():
                raise Err(f"busy:MS needs a number of milliseconds, not {ms!r}")
            deadline = time.monotonic() + int(ms) / 1000
            beats = 0
            while time.monotonic() < deadline:
                runtime.heartbeat()
                beats += 1
                time.sleep(0.01)
            return f"beat {beats} times".encode()
        if text.startswith("send:") or text.startswith("call:"):
            verb, rest = text.split(":", 1)
            to, _, payload = rest.partition(":")
            if verb == "send":
                runtime.send(to, payload.encode())
                return b"sent"
            return runtime.call(to, payload.encode(), 5000)
        raise Err(f"unknown message {text!r}")

    @_reported
    def terminate(self, reason: types.ExitReason) -> None:
        runtime.log(types.LogLevel.INFO, f"terminating: {type(reason).__name__}")
