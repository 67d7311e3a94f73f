#!/usr/bin/python3
"""A minimal PAM application with a scripted conversation (ctypes + libpam).

pamtester's conversation (libpam_misc's misc_conv) cuts answers at 4095
bytes and cannot refuse to answer, so tests that need that drive the module
through this client instead. Run it like pamtester, under pam_wrapper:

    LD_PRELOAD=libpam_wrapper.so PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR=DIR \\
        python3 pam_client.py SERVICE USER RESPONSES_JSON [FLAGS [ITEMS_JSON]]

RESPONSES_JSON is a JSON list, one entry per echo-off/echo-on prompt:
a string (the answer), null (the conversation fails: PAM_CONV_ERR) or
{"repeat": "x", "count": N} (the answer "x" * N) or {"delay": SECONDS,
"answer": ANSWER} (a user who takes that long to type). A prompt beyond the list
fails the conversation. {"from_file": PATH, "pattern": REGEX} answers with the last
match of REGEX (group 1 if it has one) in the file PATH as it is when the prompt comes,
or "" when there is none: how SMS tests type the code a stand-in provider received.
{"barrier": DIR, "answer": ANSWER} is a user who waits for the others: at the prompt
the client creates DIR/ready.PID, waits until DIR/go exists (up to 120 seconds), then
answers ANSWER (itself any of the forms above); how tests make many logins answer at the
same moment.
{"code_from_shown_uri": true} answers with the current TOTP code of the last otpauth://
URI the module showed in this conversation (or "" when none was shown), computed here
from the URI's secret, digits, period and algorithm: how a user enrolling at login types
the code their app shows; with "wrong": true, a code that is not it.
FLAGS is an integer passed to pam_authenticate. ITEMS_JSON (optional) is a JSON object
of PAM items to set before pam_authenticate: "rhost", "tty", "ruser" or "service"; a
value is text, sent as UTF-8 with lone surrogates U+DC80..U+DCFF standing for the raw
bytes 0x80..0xFF (Python's surrogateescape), so any byte string can be given. SERVICE
and USER are taken as bytes the same way (os.fsencode of the argument).

Prints one JSON object on stdout: {"rc": <pam code>, "error": <pam_strerror>,
"messages": [{"style": n, "msg": text}, ...]}. Exit status 0 on PAM_SUCCESS,
1 otherwise (like pamtester).
"""
import ctypes
import ctypes.util
import json
import os
import re
import sys
import time

PAM_PROMPT_ECHO_OFF = 1
PAM_PROMPT_ECHO_ON = 2
PAM_SUCCESS = 0
PAM_CONV_ERR = 19
# security/_pam_types.h
PAM_ITEMS = {"service": 1, "tty": 3, "rhost": 4, "ruser": 8}


class PamMessage(ctypes.Structure):
    _fields_ = [("msg_style", ctypes.c_int), ("msg", ctypes.c_char_p)]


class PamResponse(ctypes.Structure):
    _fields_ = [("resp", ctypes.c_void_p), ("resp_retcode", ctypes.c_int)]


CONV_FUNC = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_int,
    ctypes.POINTER(ctypes.POINTER(PamMessage)),
    ctypes.POINTER(ctypes.POINTER(PamResponse)),
    ctypes.c_void_p,
)


class PamConv(ctypes.Structure):
    _fields_ = [("conv", CONV_FUNC), ("appdata_ptr", ctypes.c_void_p)]


def code_from_uri(messages, wrong=False):
    import base64, hashlib, hmac, struct, urllib.parse
    uris = [m["msg"] for m in messages if m["msg"].startswith("otpauth://")]
    if not uris:
        return ""
    uri = urllib.parse.urlparse(uris[-1])
    params = dict(urllib.parse.parse_qsl(uri.query))
    secret = params["secret"].upper()
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    digits = int(params.get("digits", 6))
    period = int(params.get("period", 30))
    digest = getattr(hashlib, params.get("algorithm", "SHA1").lower())
    counter = int(params["counter"]) if uri.netloc == "hotp" else int(time.time()) // period
    mac = hmac.new(key, struct.pack(">Q", counter), digest).digest()
    offset = mac[-1] & 0x0F
    value = (struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 10 ** digits
    if wrong:
        value = (value + 1) % 10 ** digits
    return str(value).zfill(digits)


def answer_from_file(path, pattern):
    """The last match of pattern in the file at path (group 1 if any), or ""."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return ""
    matches = list(re.finditer(pattern, text))
    if not matches:
        return ""
    last = matches[-1]
    return last.group(1) if last.re.groups else last.group(0)


def main():
    service, user, responses = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    flags = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    items = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.calloc.restype = ctypes.c_void_p
    libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    # The global scope, so that pam_wrapper's LD_PRELOADed pam_start wins.
    libpam = ctypes.CDLL(None)
    try:
        libpam.pam_start
    except AttributeError:
        libpam = ctypes.CDLL("libpam.so.0")
    libpam.pam_start.argtypes = [ctypes.c_char_p, ctypes.c_char_p,
                                 ctypes.POINTER(PamConv),
                                 ctypes.POINTER(ctypes.c_void_p)]
    libpam.pam_authenticate.argtypes = [ctypes.c_void_p, ctypes.c_int]
    libpam.pam_end.argtypes = [ctypes.c_void_p, ctypes.c_int]
    libpam.pam_set_item.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p]
    libpam.pam_strerror.argtypes = [ctypes.c_void_p, ctypes.c_int]
    libpam.pam_strerror.restype = ctypes.c_char_p

    messages = []
    pending = list(responses)

    def conv(num_msg, msgs, resp_out, _appdata):
        replies = libc.calloc(num_msg, ctypes.sizeof(PamResponse))
        if not replies:
            return PAM_CONV_ERR
        array = ctypes.cast(replies, ctypes.POINTER(PamResponse))
        for i in range(num_msg):
            style = msgs[i].contents.msg_style
            text = msgs[i].contents.msg.decode("utf-8", "replace")
            messages.append({"style": style, "msg": text})
            if style not in (PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON):
                continue
            answer = pending.pop(0) if pending else None
            if answer is None:
                # libpam frees nothing on failure; leaking this is fine here.
                return PAM_CONV_ERR
            if isinstance(answer, dict) and "barrier" in answer:
                barrier = answer["barrier"]
                with open(os.path.join(barrier, f"ready.{os.getpid()}"), "w"):
                    pass
                deadline = time.monotonic() + 120
                while not os.path.exists(os.path.join(barrier, "go")) and time.monotonic() < deadline:
                    time.sleep(0.001)
                answer = answer["answer"]
            if isinstance(answer, dict) and "delay" in answer:
                time.sleep(answer["delay"])
                answer = answer["answer"]
            if isinstance(answer, dict) and "code_from_shown_uri" in answer:
                answer = code_from_uri(messages, wrong=answer.get("wrong", False))
            if isinstance(answer, dict) and "from_file" in answer:
                answer = answer_from_file(answer["from_file"], answer["pattern"])
            if isinstance(answer, dict):
                answer = answer["repeat"] * answer["count"]
            data = answer.encode()
            buf = libc.malloc(len(data) + 1)
            ctypes.memmove(buf, data + b"\0", len(data) + 1)
            array[i].resp = buf
            array[i].resp_retcode = 0
        resp_out[0] = array
        return PAM_SUCCESS

    conv_struct = PamConv(CONV_FUNC(conv), None)
    handle = ctypes.c_void_p()
    rc = libpam.pam_start(os.fsencode(service), os.fsencode(user),
                          ctypes.byref(conv_struct), ctypes.byref(handle))
    for name, value in items.items():
        if rc == PAM_SUCCESS:
            rc = libpam.pam_set_item(handle, PAM_ITEMS[name],
                                     value.encode("utf-8", "surrogateescape"))
    if rc == PAM_SUCCESS:
        rc = libpam.pam_authenticate(handle, flags)
    error = libpam.pam_strerror(handle, rc).decode()
    libpam.pam_end(handle, rc)
    print(json.dumps({"rc": rc, "error": error, "messages": messages}))
    sys.stdout.flush()
    return 0 if rc == PAM_SUCCESS else 1


if __name__ == "__main__":
    sys.exit(main())
