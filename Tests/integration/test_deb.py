"""The Debian package (install/build-deb.sh, install/debian/): built from a clean clone of this
checkout's HEAD (or taken from WATCHWORD_DEB, which Tests/run.sh built from its own checkout:
in CI a clean clone), checked by lintian, then installed, removed, purged, reinstalled and
upgraded with apt on this machine.

The machine is put back afterwards: /etc/watchword, /var/lib/watchword and
/var/backups/watchword are moved aside first and brought back; the package is purged at the
end and installed again from WATCHWORD_DEB if it was installed before. Every apt run sees a
private copy of /etc/pam.d (unshare -m), so the machine's PAM files decide nothing and are
never written.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT

VERSION = (REPO_ROOT / "VERSION").read_text().strip()
KEPT = [Path("/etc/watchword"), Path("/var/lib/watchword"), Path("/var/backups/watchword")]
CLI = Path("/usr/sbin/watchword")
HELPER = Path("/usr/libexec/watchword/watchword-helper")
DYNAMIC_HELPER = HELPER.parent / "watchword-helper-dynamic"
USER = "nobody"  # an account every Debian has; enrolled only in the test's own state


def run(*argv, check=True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


def multiarch() -> str:
    return run("dpkg-architecture", "-qDEB_HOST_MULTIARCH").stdout.strip()


def module() -> Path:
    return Path(f"/lib/{multiarch()}/security/pam_watchword.so")


def status() -> str:
    """dpkg's two-letter state of the package ('ii', 'rc', or '' when unknown)."""
    proc = run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "watchword", check=False)
    abbrev = proc.stdout.strip() if proc.returncode == 0 else ""
    return "" if abbrev.startswith("un") else abbrev


def installed_version() -> str:
    return run("dpkg-query", "-W", "-f=${Version}", "watchword").stdout


def uses_module(text: str) -> bool:
    return any(re.match(r"\s*[^#\s].*pam_watchword", line) for line in text.splitlines())


def apt(pamd: Path, *args, env_extra: dict | None = None, check=True) -> subprocess.CompletedProcess:
    """apt-get ARGS with /etc/pam.d replaced by the private directory pamd."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", **(env_extra or {})}
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", 'mount --bind "$0" /etc/pam.d && exec "$@"',
            pamd, "apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300",
            "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold", *args]
    return run(*argv, check=check, env=env, stdin=subprocess.DEVNULL, timeout=600)


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    """The package: WATCHWORD_DEB, or built by install/build-deb.sh in a clean clone of HEAD."""
    if os.geteuid() != 0:
        pytest.skip("the package tests must run as root (apt)")
    if os.environ.get("WATCHWORD_DEB"):
        return Path(os.environ["WATCHWORD_DEB"])
    base = tmp_path_factory.mktemp("deb")
    # The checkout may belong to another user (CI clones as root, developers do not):
    # safe.directory for these git runs only, not in anyone's config.
    env = {**os.environ, "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory", "GIT_CONFIG_VALUE_0": "*"}
    run("git", "clone", "--quiet", "--no-local", REPO_ROOT, base / "clone", env=env)
    run("bash", base / "clone/install/build-deb.sh", base / "out", env=env, timeout=3600)
    arch = run("dpkg-architecture", "-qDEB_HOST_ARCH").stdout.strip()
    built = base / "out" / f"watchword_{VERSION}_{arch}.deb"
    assert built.is_file(), sorted(os.listdir(base / "out"))
    return built


@pytest.fixture(scope="module")
def machine(deb, tmp_path_factory):
    """A machine with no watchword package, config or state; put back as it was after."""
    before = status() == "ii"
    if before and not os.environ.get("WATCHWORD_DEB"):
        pytest.skip("a watchword package is installed and WATCHWORD_DEB does not name its .deb: it could not be put back")
    for tool in ("apt-get", "unshare", "lintian", "dpkg-architecture"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is missing (install/deps.sh --test)")
    aside = tmp_path_factory.mktemp("aside")
    moved = []  # (where it was, where it is now): the three are all named 'watchword'
    for i, d in enumerate(KEPT):
        if os.path.lexists(d):
            shutil.move(d, aside / str(i))
            moved.append((d, aside / str(i)))
    clean = pam_dir(tmp_path_factory.mktemp("pamd-machine"), using=False)
    try:
        if status():
            apt(clean, "purge", "watchword")
        yield
    finally:
        if status():
            apt(clean, "purge", "watchword", check=False)
        for d in KEPT:
            shutil.rmtree(d, ignore_errors=True)
        for d, kept in moved:
            shutil.move(kept, d)
        if before:
            apt(clean, "install", "--reinstall", os.environ["WATCHWORD_DEB"])


def pam_dir(base: Path, using: bool) -> Path:
    """A copy of /etc/pam.d with no line that uses the module, plus (using) one that does."""
    d = Path(base) / "pam.d"
    shutil.copytree("/etc/pam.d", d, symlinks=True)
    for f in d.iterdir():
        if f.is_file() and uses_module(f.read_text(errors="replace")):
            f.unlink()
    (d / "watchword-commented").write_text("# auth required pam_watchword.so   (a comment breaks nothing)\n")
    if using:
        (d / "watchword-deb-test").write_text("auth required pam_watchword.so nullok\n")
    return d


@pytest.fixture
def pamd(tmp_path) -> Path:
    return pam_dir(tmp_path, using=False)


@pytest.fixture
def pamd_using(tmp_path) -> Path:
    return pam_dir(tmp_path / "using", using=True)


def install(pamd: Path, deb: Path) -> None:
    apt(pamd, "install", "--reinstall", deb)
    assert status() == "ii" and installed_version() == VERSION


def enroll() -> dict:
    out = run(CLI, "enroll", USER, "--totp", "--json").stdout
    return json.loads(out)


def state_files() -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(Path("/var/lib/watchword").rglob("*")) if p.is_file()}


# ---- the package itself ----------------------------------------------------

def test_the_package_names_its_version_and_debian_dependencies(deb):
    fields = run("dpkg-deb", "-f", deb, "Package", "Version", "Depends", "Recommends", "Suggests").stdout
    assert f"Version: {VERSION}\n" in fields
    depends = re.search(r"^Depends: (.*)$", fields, re.M).group(1)
    names = {d.split()[0] for d in depends.split(", ")}
    assert {"libc6", "libpam0g", "libssl3", "libqrencode4"} <= names, depends
    assert not any("swift" in n for n in names), depends
    assert "Recommends: libcurl4\n" in fields and "Suggests: libpq5\n" in fields
    assert deb.name == f"watchword_{VERSION}_{run('dpkg-architecture', '-qDEB_HOST_ARCH').stdout.strip()}.deb"


def test_lintian_has_no_error_and_no_unexplained_warning(deb):
    proc = run("lintian", "--pedantic", "--display-info", deb, check=False)
    lines = [l for l in proc.stdout.splitlines() if re.match(r"[EWX]: ", l)]
    assert lines == [], proc.stdout + proc.stderr
    # Every override kept has a comment above it that says why.
    overrides = (REPO_ROOT / "install/debian/lintian-overrides").read_text().splitlines()
    for i, line in enumerate(overrides):
        if line.strip() and not line.startswith("#"):
            block = []  # the lines above it, up to a blank one
            for above in reversed(overrides[:i]):
                if not above.strip():
                    break
                block.append(above)
            assert any(l.startswith("#") for l in block), f"no comment says why: {line}"


def test_build_deb_refuses_a_version_the_changelog_does_not_name(tmp_path):
    """VERSION is the one source of the version; a bump without a changelog entry stops the
    build before anything is compiled."""
    (tmp_path / "install/debian").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "install/build-deb.sh", tmp_path / "install")
    shutil.copy(REPO_ROOT / "install/debian/changelog", tmp_path / "install/debian")
    (tmp_path / "VERSION").write_text("9.9.9\n")
    res = run("bash", tmp_path / "install/build-deb.sh", check=False)
    assert res.returncode == 1
    assert f"VERSION says 9.9.9 but install/debian/changelog starts with {VERSION}: add an entry for 9.9.9" in res.stderr
    assert not list(tmp_path.glob("*.deb"))


# ---- on this machine -------------------------------------------------------

def test_installed_files_owners_modes_and_libraries(machine, deb, pamd):
    before = {f.name: f.read_bytes() for f in pamd.iterdir() if f.is_file()}
    install(pamd, deb)
    assert {f.name: f.read_bytes() for f in pamd.iterdir() if f.is_file()} == before, "the package edited /etc/pam.d"
    expect = {
        CLI: (0o755, "file"), HELPER: (0o755, "file"), DYNAMIC_HELPER: (0o755, "file"),
        HELPER.parent: (0o755, "dir"),
        module(): (0o644, "file"), Path("/etc/watchword"): (0o700, "dir"),
        Path("/etc/watchword/config.toml"): (0o600, "file"), Path("/var/lib/watchword"): (0o700, "dir"),
        Path("/usr/share/man/man8/watchword.8.gz"): (0o644, "file"),
        Path("/usr/share/man/man8/pam_watchword.8.gz"): (0o644, "file"),
        Path("/usr/share/man/man5/watchword-config.toml.5.gz"): (0o644, "file"),
        Path("/usr/share/bash-completion/completions/watchword"): (0o644, "file"),
        Path("/usr/share/zsh/vendor-completions/_watchword"): (0o644, "file"),
        Path("/usr/share/doc/watchword/copyright"): (0o644, "file"),
        Path("/usr/share/doc/watchword/changelog.gz"): (0o644, "file"),
        Path("/usr/share/watchword/pam.d-sshd"): (0o644, "file"),
        Path("/usr/share/watchword/pam.d-sudo"): (0o644, "file"),
        Path("/usr/share/watchword/sshd_config-watchword.conf"): (0o644, "file"),
    }
    for path, (mode, kind) in expect.items():
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, mode), path
        assert (kind == "dir") == path.is_dir(), path
    # dpkg knows every file it installed (the state directory is the postinst's).
    listed = [Path(l) for l in run("dpkg", "-L", "watchword").stdout.splitlines()]
    files = [p for p in listed if p.is_file() and not p.is_symlink()]
    assert set(p for p in expect if expect[p][1] == "file") <= set(files)
    for f in files:
        assert run("dpkg", "-S", f).stdout.startswith("watchword: "), f
    # Beside pam_unix.so, in the directory libpam-modules ships (dpkg -S finds both there).
    assert run("dpkg", "-S", module().parent / "pam_unix.so").stdout.startswith("libpam-modules")
    # The programs need only Debian's libraries: nothing from the Swift toolchain.
    # The helper the module runs is fully static (it loads nothing); the dynamic one beside it
    # and the CLI load only Debian's libraries.
    assert "not a dynamic executable" in run("ldd", HELPER, check=False).stdout + run("ldd", HELPER, check=False).stderr
    for program in (CLI, DYNAMIC_HELPER):
        out = run("ldd", program).stdout
        assert "not found" not in out, out
        for lib in re.findall(r"=> (/\S+)", out):
            assert "swift" not in lib and not lib.startswith("/opt"), out
            assert run("dpkg", "-S", os.path.realpath(lib), check=False).returncode == 0 or \
                run("dpkg", "-S", lib, check=False).returncode == 0, f"{program}: {lib} is in no Debian package"
    assert run(CLI, "--version").stdout.strip() == VERSION
    assert status() == "ii"


def test_remove_keeps_config_and_state_reinstall_and_purge(machine, deb, pamd):
    install(pamd, deb)
    enroll()
    config = Path("/etc/watchword/config.toml").read_bytes()
    state = state_files()
    assert any(USER in name for name in state), state
    apt(pamd, "remove", "watchword")
    assert status() == "rc"
    assert not module().exists() and not CLI.exists() and not HELPER.exists()
    assert Path("/etc/watchword/config.toml").read_bytes() == config
    assert state_files() == state
    install(pamd, deb)  # again, after remove
    assert state_files() == state
    assert json.loads(run(CLI, "show", USER, "--json").stdout)["user"] == USER
    apt(pamd, "purge", "watchword")
    assert status() == ""
    for d in KEPT:
        assert not d.exists(), d
    install(pamd, deb)  # and after purge: a fresh config and an empty state directory
    assert Path("/etc/watchword/config.toml").read_bytes() == (REPO_ROOT / "install/config.toml").read_bytes()
    assert state_files() == {}


def test_remove_is_refused_while_pam_d_uses_the_module(machine, deb, pamd, pamd_using):
    install(pamd, deb)
    res = apt(pamd_using, "remove", "watchword", check=False)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "refusing to remove the package: these PAM files still use pam_watchword.so: /etc/pam.d/watchword-deb-test" in out
    assert "watchword-commented" not in out.split("still use pam_watchword.so:")[1].splitlines()[0]
    assert "every login through them fails" in out and "watchword disable sshd" in out
    assert status() == "ii" and module().exists() and HELPER.exists()
    apt(pamd_using, "purge", "watchword", check=False)
    assert status() == "ii" and module().exists()
    apt(pamd_using, "remove", "watchword", env_extra={"WATCHWORD_REMOVE_ANYWAY": "1"})
    assert status() == "rc" and not module().exists()


def bumped(deb: Path, base: Path) -> tuple[Path, str]:
    """The same package with the next version: what the next build-deb.sh would make."""
    parts = VERSION.split(".")
    version = ".".join(parts[:-1] + [str(int(re.match(r"\d+", parts[-1]).group()) + 1)])
    tree = base / "tree"
    run("dpkg-deb", "-R", deb, tree)
    control = tree / "DEBIAN/control"
    control.write_text(re.sub(r"^Version: .*$", f"Version: {version}", control.read_text(), flags=re.M))
    out = base / deb.name.replace(f"_{VERSION}_", f"_{version}_")
    run("dpkg-deb", "--root-owner-group", "--build", tree, out)
    return out, version


def test_upgrade_keeps_state_and_a_changed_config_even_while_pam_d_uses_it(machine, deb, pamd, pamd_using, tmp_path):
    install(pamd, deb)
    enroll()
    config = Path("/etc/watchword/config.toml")
    config.write_text(config.read_text().replace("window = 1 ", "window = 2 "))
    changed, state = config.read_bytes(), state_files()
    assert b"window = 2 " in changed
    newer, version = bumped(deb, tmp_path)
    apt(pamd_using, "install", newer)  # an upgrade is never refused: the module is replaced in place
    assert status() == "ii" and installed_version() == version
    assert config.read_bytes() == changed
    assert (os.stat(config).st_mode & 0o777, os.stat("/etc/watchword").st_mode & 0o777) == (0o600, 0o700)
    assert state_files() == state
    assert json.loads(run(CLI, "show", USER, "--json").stdout)["user"] == USER
    assert module().exists() and HELPER.exists()
