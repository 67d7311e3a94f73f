#!/usr/bin/python3
"""A well-behaved fake watchword helper (protocol version 1).

It reads and checks the header, prompts once, reads the reply and reports
success when the answer equals the code in ``code.txt`` next to it (default
``123456``). Everything it saw goes to ``record.json`` next to it, so tests
can assert on what the module sent. Outcomes: wrong answer -> auth_err (10),
``too-long`` -> auth_err (10), ``conv-error`` -> conv_err (14).
"""
import json
import os
import re
import sys

# The module runs a script through /dev/fd/3 (its checked descriptor): realpath
# finds the file itself.
HERE = os.path.dirname(os.path.realpath(__file__))
RECORD = os.path.join(HERE, "record.json")
KEYS = ["nonce", "user", "service", "rhost", "state_dir", "config", "account", "config_required", "debug",
        "timeout"]


class Conn:
    """Protocol I/O on fd 0 (in) and fd 1 (out), unbuffered."""

    def __init__(self):
        self.pending = b""

    def read_line(self):
        while b"\n" not in self.pending:
            chunk = os.read(0, 4096)
            if not chunk:
                raise EOFError("module closed the socket")
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line

    def read_exact(self, n):
        while len(self.pending) < n:
            chunk = os.read(0, 65536)
            if not chunk:
                raise EOFError("module closed the socket")
            self.pending += chunk
        data, self.pending = self.pending[:n], self.pending[n:]
        return data

    def send(self, line):
        data = line.encode() + b"\n"
        while data:
            data = data[os.write(1, data):]


def save(record):
    with open(RECORD, "w") as f:
        json.dump(record, f)


def main():
    record = {"argv": sys.argv[1:], "env": dict(os.environ), "errors": []}
    conn = Conn()
    header = []
    while True:
        line = conn.read_line().decode("utf-8", "surrogateescape")
        header.append(line)
        if line == "end":
            break
    record["header_lines"] = header
    if header[0] != "WATCHWORD 1":
        record["errors"].append("bad version line")
    fields = {}
    for line, key in zip(header[1:-1], KEYS):
        k, sep, v = line.partition(" ")
        if k != key or not sep:
            record["errors"].append("expected key %s, got %r" % (key, line))
        fields[k] = v
    if len(header) != len(KEYS) + 2:
        record["errors"].append("header has %d lines" % len(header))
    nonce = fields.get("nonce", "")
    if not re.fullmatch(r"[0-9a-f]{32}", nonce):
        record["errors"].append("bad nonce")
    record["header"] = fields
    save(record)

    try:
        with open(os.path.join(HERE, "code.txt")) as f:
            code = f.read().strip()
    except FileNotFoundError:
        code = "123456"

    conn.send("info Hello from the fake helper")
    conn.send("prompt Verification code: ")
    reply = conn.read_line().decode()
    if reply.startswith("answer "):
        answer = conn.read_exact(int(reply[len("answer "):]))
        record["reply"] = "answer"
        record["answer_len"] = len(answer)
        outcome = "success" if answer == code.encode() else "auth_err"
    elif reply == "too-long":
        record["reply"] = "too-long"
        outcome = "auth_err"
    elif reply == "conv-error":
        record["reply"] = "conv-error"
        outcome = "conv_err"
    else:
        record["reply"] = "garbage: %r" % reply
        outcome = "unavailable"
    record["outcome"] = outcome
    save(record)
    conn.send("result %s %s" % (nonce, outcome))
    return {"success": 0, "auth_err": 10, "conv_err": 14, "unavailable": 13}[outcome]


if __name__ == "__main__":
    sys.exit(main())
