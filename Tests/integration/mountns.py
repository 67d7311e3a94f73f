"""Private mount namespaces for a test's child process: a preexec_fn that gives the child
(and everything it starts: libpam, the module, the helper) its own view of a few system
files, e.g. /etc/nsswitch.conf or the CA bundle, without changing the machine.

    enter = private_mounts(binds={"/etc/hosts": my_hosts},
                           overlays={"/usr/lib/x86_64-linux-gnu": extra_lib_dir})
    subprocess.run(argv, preexec_fn=enter)

``binds`` bind-mounts a file over an existing one; ``overlays`` lays a directory's files
over an existing directory (read-only overlayfs). Mounts are private to the child's
namespace and go away with it. Needs root.
"""
from __future__ import annotations

import ctypes
import os
from typing import Mapping

CLONE_NEWNS = 0x00020000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.unshare.argtypes = [ctypes.c_int]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def private_mounts(binds: Mapping[str, os.PathLike | str] = {},
                   overlays: Mapping[str, os.PathLike | str] = {}):
    binds = {str(k): os.fsencode(str(v)) for k, v in binds.items()}
    overlays = {str(k): str(v) for k, v in overlays.items()}

    def enter():
        _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
        for target, lower in overlays.items():
            _check(_libc.mount(b"overlay", target.encode(), b"overlay", 0,
                               f"lowerdir={lower}:{target}".encode()), f"overlay on {target}")
        for target, source in binds.items():
            _check(_libc.mount(source, target.encode(), None, MS_BIND, None), f"bind over {target}")

    return enter
