"""The QR code reads on every terminal (SECURITY.md is silent; README "Quick start").

The CLI draws it black on white with a quiet zone whatever the terminal's theme (SGR 30;47,
as `google-authenticator -Q UTF8` does), so it decodes on a dark and on a light theme
alike. The test runs `watchword enroll` on a pseudo-terminal, paints what it printed the
way a terminal would — half blocks in the foreground colour, the rest in the background,
uncoloured cells in the theme's own colours — and decodes the picture with zbarimg
(zbar-tools), an independent QR reader.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pexpect
import pytest

BLACK, WHITE = 0, 255
THEMES = {"dark": (WHITE, BLACK), "light": (BLACK, WHITE)}  # (default fg, default bg)
HALF = {"█": (True, True), "▀": (True, False), "▄": (False, True), " ": (False, False)}


def paint(lines: list[str], theme: str, scale: int = 4) -> bytes:
    """A PGM picture of terminal lines: each cell is two modules, top and bottom."""
    default_fg, default_bg = THEMES[theme]
    rows: list[list[int]] = []
    for line in lines:
        fg, bg = default_fg, default_bg
        top: list[int] = []
        bottom: list[int] = []
        for token in re.findall(r"\x1b\[[0-9;]*m|.", line):
            if token.startswith("\x1b["):
                for code in (token[2:-1] or "0").split(";"):
                    if code == "0":
                        fg, bg = default_fg, default_bg
                    elif code == "30":
                        fg = BLACK
                    elif code == "47":
                        bg = WHITE
                    else:
                        raise AssertionError(f"unexpected SGR {code} in {line!r}")
                continue
            upper, lower = HALF[token]
            top.append(fg if upper else bg)
            bottom.append(fg if lower else bg)
        rows += [top, bottom]
    width = max(len(r) for r in rows)
    pixels = bytearray()
    for row in rows:
        row = row + [THEMES[theme][1]] * (width - len(row))
        line = bytes(v for v in row for _ in range(scale))
        pixels += line * scale
    margin = 8 * scale  # the terminal around the code, in the theme's background
    full_width = width * scale + 2 * margin
    out = bytearray()
    blank = bytes([THEMES[theme][1]]) * full_width
    out += blank * margin
    for i in range(0, len(pixels), width * scale):
        out += bytes([THEMES[theme][1]]) * margin + pixels[i:i + width * scale] + bytes([THEMES[theme][1]]) * margin
    out += blank * margin
    height = len(out) // full_width
    return f"P5 {full_width} {height} 255\n".encode() + bytes(out)


def decode(picture: bytes, tmp_path: Path, name: str) -> str | None:
    path = tmp_path / f"{name}.pgm"
    path.write_bytes(picture)
    res = subprocess.run(["zbarimg", "--quiet", "--raw", str(path)], capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else None


def qr_lines(text: str) -> list[str]:
    """The code's lines, its quiet zone included (rows of coloured spaces)."""
    return [l for l in text.splitlines() if l.startswith("\x1b[30;47m") or any(c in l for c in "█▀▄")]


@pytest.fixture
def zbar():
    if not shutil.which("zbarimg"):
        pytest.fail("zbarimg (zbar-tools) is needed: install/deps.sh --test installs it")


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_the_cli_qr_code_decodes_on_dark_and_light_terminals(ww, tmp_path, zbar, theme):
    child = pexpect.spawn(str(ww.cli_path), ["enroll", "qruser", "--totp", "--state-dir", str(ww.state),
                                             "--config", str(ww.config)], encoding="utf-8", timeout=30,
                          env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    child.expect(pexpect.EOF)
    out = child.before.replace("\r\n", "\n")
    uri = re.search(r"^otpauth://\S+", out, re.M).group(0)
    lines = qr_lines(out)
    assert lines and all(l.startswith("\x1b[30;47m") and l.endswith("\x1b[0m") for l in lines), lines[:2]
    # The quiet zone: two lines (four modules) of white above and below.
    for quiet in lines[:2] + lines[-2:]:
        assert set(quiet[len("\x1b[30;47m"):-len("\x1b[0m")]) == {" "}, quiet
    assert decode(paint(lines, theme), tmp_path, theme) == uri


def test_without_a_terminal_the_code_is_plain_and_reads_on_a_dark_theme(ww, tmp_path, zbar):
    out = ww.cli("enroll", "qrplain", "--totp").stdout
    uri = re.search(r"^otpauth://\S+", out, re.M).group(0)
    lines = qr_lines(out)
    assert lines and not any("\x1b" in l for l in lines)
    assert decode(paint(lines, "dark"), tmp_path, "plain") == uri


def test_the_painter_can_fail(ww, tmp_path, zbar):
    """The check above can fail: the plain code (light modules drawn as blocks, as before
    colours) on a light theme is an inverted code that zbar does not read."""
    out = ww.cli("enroll", "qrplain", "--totp").stdout
    assert decode(paint(qr_lines(out), "light"), tmp_path, "inverted") is None
