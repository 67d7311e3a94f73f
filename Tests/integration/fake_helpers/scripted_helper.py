#!/usr/bin/python3
"""A fake watchword helper that follows a script, good or bad.

It reads ``scenario.json`` next to itself: a list of steps, each a list
``[verb, args...]``, run in order. ``{nonce}`` in sent text is replaced by
the nonce from the header. What it saw goes to ``record.json`` next to it
(rewritten after every step, so it survives a SIGKILL).

Steps:
  ["header"]              read the header up to "end" and record it
  ["send", text]          send text + "\\n"
  ["send_raw", text]      send text as is (no "\\n" added)
  ["send_repeat", ch, n]  send ch * n, no "\\n"
  ["reply"]               read one reply to a prompt and record it
  ["sleep", seconds]
  ["spawn_sleeper", s]    fork a grandchild that sleeps s seconds (pid recorded)
  ["close"]               close fds 0 and 1
  ["signal", signum]      send itself a signal
  ["exit", status]
The helper exits 0 after the last step unless a step ended it.
"""
import json
import os
import signal
import sys
import time

# The module runs a script through /dev/fd/3 (its checked descriptor): realpath
# finds the file itself.
HERE = os.path.dirname(os.path.realpath(__file__))
RECORD = os.path.join(HERE, "record.json")


class Conn:
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

    def send(self, data):
        while data:
            data = data[os.write(1, data):]


def main():
    with open(os.path.join(HERE, "scenario.json")) as f:
        steps = json.load(f)
    record = {"pid": os.getpid(), "replies": [], "steps_done": 0}

    def save():
        tmp = RECORD + ".tmp"
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.replace(tmp, RECORD)

    save()
    conn = Conn()
    nonce = ""
    for step in steps:
        verb, args = step[0], step[1:]
        if verb == "header":
            lines = []
            while True:
                line = conn.read_line().decode("utf-8", "surrogateescape")
                lines.append(line)
                if line == "end":
                    break
            record["header_lines"] = lines
            for line in lines:
                if line.startswith("nonce "):
                    nonce = line[len("nonce "):]
        elif verb == "send":
            conn.send(args[0].replace("{nonce}", nonce).encode() + b"\n")
        elif verb == "send_raw":
            conn.send(args[0].replace("{nonce}", nonce).encode())
        elif verb == "send_repeat":
            conn.send(args[0].encode() * args[1])
        elif verb == "reply":
            reply = conn.read_line().decode()
            entry = {"reply": reply}
            if reply.startswith("answer "):
                entry["length"] = int(reply[len("answer "):])
                entry["answer"] = conn.read_exact(entry["length"]).decode(
                    "utf-8", "surrogateescape")
            record["replies"].append(entry)
        elif verb == "sleep":
            time.sleep(args[0])
        elif verb == "spawn_sleeper":
            pid = os.fork()
            if pid == 0:
                time.sleep(args[0])
                os._exit(0)
            record["sleeper_pid"] = pid
        elif verb == "close":
            os.close(0)
            os.close(1)
        elif verb == "signal":
            save()
            os.kill(os.getpid(), args[0])
            time.sleep(5)
        elif verb == "exit":
            save()
            os._exit(args[0])
        else:
            raise SystemExit("unknown step %r" % verb)
        record["steps_done"] += 1
        save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
