"""Manual pages, shell completions and --help goldens of the commands in test_import.py.

The pages must render without a single groff or man warning, and must not fall behind the
code: every command and long option `--help` shows, every PAM module option and every
config key is named in its page."""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from ww import CLI

MAN = REPO_ROOT / "man"
PAGES = ["watchword.8", "pam_watchword.8", "watchword-config.toml.5"]
GOLDEN = Path(__file__).parent / "golden"


def roff_text(page: str) -> str:
    """The page's source with the escapes that hide option names taken out."""
    text = (MAN / page).read_text()
    text = re.sub(r"\\f[BIRP]", "", text)
    return text.replace("\\-", "-").replace("\\(dq", '"').replace("\\c\n.IR ", "")


def help_of(*args: str) -> str:
    proc = subprocess.run([str(CLI), *args, "--help"], capture_output=True, text=True,
                          env={"COLUMNS": "100", "PATH": os.environ["PATH"]})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def subcommands(help_text: str) -> list[str]:
    """The names listed under SUBCOMMANDS: (up to the blank line that ends the list)."""
    if "\nSUBCOMMANDS:\n" not in help_text:
        return []
    block = help_text.split("\nSUBCOMMANDS:\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^  ([a-z][a-z0-9-]*)(?:  |$)", block, re.M)


def long_options(help_text: str) -> set[str]:
    section = help_text.split("OPTIONS:", 1)[1] if "OPTIONS:" in help_text else ""
    return set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", section, re.M))


def all_commands(prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    assert len(prefix) < 3, prefix
    found = []
    for name in subcommands(help_of(*prefix)):
        if name == "help":
            continue
        found.append(prefix + (name,))
        found += all_commands(prefix + (name,))
    return found


@pytest.mark.parametrize("page", PAGES)
def test_man_page_renders_without_warnings(page):
    proc = subprocess.run(["man", "-l", "--warnings", "-E", "UTF-8", str(MAN / page)],
                          capture_output=True, text=True, env={**os.environ, "MANWIDTH": "80"})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "SEE ALSO"):
        assert re.search(rf"^{section}$", proc.stdout, re.M), (page, section)
    # groff's own full warning set too (-ww), with tbl for the pages that ask for it.
    proc = subprocess.run(["groff", "-t", "-man", "-Tutf8", "-ww", "-z", str(MAN / page)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_watchword_8_names_every_command_and_option():
    text = roff_text("watchword.8")
    commands = all_commands()
    assert ("import", "google-authenticator") in commands and ("export",) in commands
    missing = []
    for command in [()] + commands:
        if command and command[-1] not in text:
            missing.append(" ".join(command))
        for option in long_options(help_of(*command)):
            if option not in text:
                missing.append(f"{' '.join(command)} {option}")
    assert "--generate-completion-script" in text
    assert not missing, f"watchword.8 does not mention: {missing}"
    for section in ("EXIT STATUS", "EXAMPLES", "SECURITY"):
        assert f".SH {section}" in text


def test_pam_watchword_8_names_every_module_option_and_result():
    text = roff_text("pam_watchword.8")
    source = (REPO_ROOT / "pam" / "pam_watchword.c").read_text()
    options = set(re.findall(r'"(\w+)="', source))  # "helper=", strncmp(arg, "timeout=", 8)
    options |= set(re.findall(r'strcmp\(arg, "(\w+)"\) == 0', source))
    assert options >= {"nullok", "debug", "timeout", "state_dir", "config", "helper"}
    for option in options:
        assert re.search(rf"^\.BI? {option}\b", text, re.M), option
    for result in ("PAM_SUCCESS", "PAM_AUTH_ERR", "PAM_IGNORE", "PAM_MAXTRIES", "PAM_AUTHINFO_UNAVAIL",
                   "PAM_CONV_ERR"):
        assert result in text, result


def test_config_page_names_every_key():
    text = roff_text("watchword-config.toml.5")
    source = (REPO_ROOT / "Sources" / "WatchwordCore" / "Config.swift").read_text()
    keys = re.findall(r'reader\.\w+\(\s*"([a-z0-9_.-]+)"', source)
    assert "policy.window" in keys and len(keys) > 20
    for key in keys:
        table, leaf = key.rsplit(".", 1)
        assert f"[{table}]" in text, key
        assert re.search(rf"^\.BR? {re.escape(leaf)}\b", text, re.M), key


def test_completions_generate_and_parse(tmp_path):
    bash = subprocess.run([str(CLI), "--generate-completion-script", "bash"], capture_output=True, text=True)
    assert bash.returncode == 0 and "import" in bash.stdout and "google-authenticator" in bash.stdout
    script = tmp_path / "watchword.bash"
    script.write_text(bash.stdout)
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    zsh = subprocess.run([str(CLI), "--generate-completion-script", "zsh"], capture_output=True, text=True)
    assert zsh.returncode == 0 and zsh.stdout.startswith("#compdef watchword")


def test_zsh_completion_parses(tmp_path):
    if not shutil.which("zsh"):
        pytest.skip("zsh is needed (install/deps.sh --test installs it)")
    zsh = subprocess.run([str(CLI), "--generate-completion-script", "zsh"], capture_output=True, text=True)
    (tmp_path / "_watchword").write_text(zsh.stdout)
    check = subprocess.run(["zsh", "-n", str(tmp_path / "_watchword")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_docs_sh_installs_and_uninstalls(tmp_path):
    env = {**os.environ, "MANDIR": str(tmp_path / "man"),
           "BASH_COMPLETION_DIR": str(tmp_path / "bash"), "ZSH_COMPLETION_DIR": str(tmp_path / "zsh")}
    proc = subprocess.run(["bash", str(REPO_ROOT / "install" / "docs.sh"), "install", str(CLI)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    installed = [tmp_path / "man/man8/watchword.8", tmp_path / "man/man8/pam_watchword.8",
                 tmp_path / "man/man5/watchword-config.toml.5", tmp_path / "bash/watchword",
                 tmp_path / "zsh/_watchword"]
    for path in installed:
        st = path.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o644), path
    # man finds each page by name in the installed tree.
    for name, section in [("watchword", "8"), ("pam_watchword", "8"), ("watchword-config.toml", "5")]:
        found = subprocess.run(["man", "-M", str(tmp_path / "man"), "-w", section, name], capture_output=True, text=True)
        assert found.stdout.strip() == str(tmp_path / f"man/man{section}/{name}.{section}"), found.stderr
    proc = subprocess.run(["bash", str(REPO_ROOT / "install" / "docs.sh"), "uninstall"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert not any(p.exists() for p in installed)


def test_the_package_build_calls_docs_sh():
    assert 'bash install/docs.sh install "$bin/watchword"' in (REPO_ROOT / "install" / "build-deb.sh").read_text()


@pytest.mark.parametrize("command", ["import", "import google-authenticator", "import oath", "export"])
def test_help_matches_golden(command):
    out = help_of(*command.split())
    golden = GOLDEN / f"help-{command.replace(' ', '-')}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(out)
    assert out == golden.read_text()


def test_the_synopsis_shows_only_options_each_command_takes():
    """watchword(8)'s SYNOPSIS once showed --json for remove, unlock and sms-test, which
    reject it: every option a synopsis line shows must be in each of its commands' --help."""
    source = (REPO_ROOT / "man" / "watchword.8").read_text()
    synopsis = source.split(".SH SYNOPSIS", 1)[1].split(".SH ", 1)[0]
    wrong = []
    for block in synopsis.split(".SY watchword")[1:]:
        lines = [l for l in block.strip().splitlines() if l.strip()]
        first = lines[0]
        if not first.startswith((".B ", ".BR ")) or first.startswith(".BR enable"):
            continue  # "command [options]" or enable|disable sshd|sudo [options]
        names = [w.replace("\\-", "-") for w in re.split(r"[ |]+", first.split(" ", 1)[1]) if w]
        words = [w for w in names if re.fullmatch(r"[a-z-]+", w)]
        if words[:1] in (["store"], ["import"]):
            words = [" ".join(words[:2])] if len(words) > 1 else words
        options = set(re.findall(r"\\-\\-([a-z][a-z-]*)", block))
        for command in words:
            help_text = help_of(*command.split())
            for option in options:
                if f"--{option}" not in help_text:
                    wrong.append(f"{command} --{option}")
    assert not wrong, f"the synopsis shows options these commands do not take: {wrong}"
