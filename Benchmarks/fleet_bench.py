#!/usr/bin/python3
"""Fleet mode (issue #8): login latency on PostgreSQL against the file store, and a fleet
under concurrent load, through the real module.

Every login is pamtester under pam_wrapper loading the real pam_watchword.so, which runs
the real helper, as in pam_bench.py (whose helpers this reuses). One run starts a private
PostgreSQL 15 on loopback with TLS (sslmode=verify-full, a test CA: Tests/integration/
pgserver.py), makes a file store of N users with one secret, and imports it into the
database with `watchword store import-files`. Then:

1. latency: file store and PostgreSQL in alternation, login by login (the first of each
   pair alternates too), each login a fresh user so replay protection never turns a right
   code into a wrong one; median and p99 of each and the difference of the medians
   (target: through a local PgBouncer on a unix socket at most 5 ms over the file store,
   libpq's load included; direct over TLS is reported, with no target);
2. concurrency: 128 logins at once spread over two hosts (two configs and state
   directories on the one database), one user each, every fourth with a wrong code; every
   outcome checked;
3. one code, 32 logins at once over the two hosts: exactly one success.

    python3 Benchmarks/fleet_bench.py [--quick] [--logins N] [--json FILE]

Needs root, pamtester, libpam-wrapper, postgresql 15, openssl, a built watchword
(WATCHWORD_BUILD, default .build/release, else .build/debug) and pam/pam_watchword.so.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "Tests" / "integration"))

from pam_bench import MODULE, SECRET_B32, bench_root, build_dir, pamtester_login, pct, summary, totp  # noqa: E402
from pgserver import PgServer  # noqa: E402


def stable_code(margin: float = 3) -> str:
    """A code with at least `margin` seconds left in its step."""
    if 30 - time.time() % 30 < margin:
        time.sleep(30 - time.time() % 30 + 0.05)
    return totp()


def run(argv: list, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, argv))} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


class PgBouncer:
    """A local PgBouncer in front of the database (the README's low-latency recipe): a Unix
    socket in a directory only root and postgres can enter, trust there, TLS verify-full
    to the server, transaction pooling. The helper then pays neither the TLS handshake nor
    the server's backend start-up per login."""

    def __init__(self, base: Path, pg: PgServer):
        import pwd
        # Its own directory under /tmp: the benchmark's is root 0700, which postgres cannot enter.
        self.dir = Path(tempfile.mkdtemp(prefix="ww-pgbouncer-", dir="/tmp"))
        self.sock = self.dir / "sock"
        self.sock.mkdir(parents=True)
        user = pwd.getpwnam("postgres")
        for d in (self.dir, self.sock):
            os.chown(d, user.pw_uid, user.pw_gid)
            os.chmod(d, 0o700)
        userlist = self.dir / "userlist.txt"
        userlist.write_text(f'"watchword" "{pg.password}"\n')
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(
            f"[databases]\nwatchword = host=127.0.0.1 port={pg.port} dbname=watchword user=watchword\n"
            "[pgbouncer]\nlisten_addr =\nlisten_port = 6432\n"
            f"unix_socket_dir = {self.sock}\nauth_type = trust\nauth_file = {userlist}\n"
            "pool_mode = transaction\nignore_startup_parameters = options\n"
            f"server_tls_sslmode = verify-full\nserver_tls_ca_file = {pg.ca}\n"
            "max_client_conn = 1000\ndefault_pool_size = 20\n"
            f"logfile = {self.dir}/pgbouncer.log\npidfile = {self.dir}/pgbouncer.pid\n")
        for f in (userlist, ini):
            os.chown(f, user.pw_uid, user.pw_gid)
            os.chmod(f, 0o600)
        run(["runuser", "-u", "postgres", "--", "pgbouncer", "-d", ini])
        for _ in range(50):
            if (self.sock / ".s.PGSQL.6432").exists():
                break
            time.sleep(0.1)

    @property
    def conninfo(self) -> str:
        return f"host={self.sock} port=6432 dbname=watchword user=watchword"

    def stop(self) -> None:
        pid = self.dir / "pgbouncer.pid"
        if pid.exists():
            try:
                os.kill(int(pid.read_text()), 15)
            except (ProcessLookupError, ValueError):
                pass
        time.sleep(0.2)
        shutil.rmtree(self.dir, ignore_errors=True)


class Fleet:
    """A file store, and two PostgreSQL hosts on one database, each with its PAM service."""

    def __init__(self, base: Path, pg: PgServer, build: Path, users: int, pooler: PgBouncer | None = None):
        self.base, self.pg, self.cli = base, pg, build / "watchword"
        os.chmod(base, 0o700)
        self.services = base / "pam.d"
        self.services.mkdir()
        libexec = base / "libexec"
        libexec.mkdir()
        os.chmod(libexec, 0o755)
        self.helper = libexec / "watchword-helper"
        shutil.copy(build / "watchword-helper", self.helper)
        os.chmod(self.helper, 0o755)
        # The package's static helper hands a fleet login to its dynamic sibling.
        if (build / "watchword-helper-dynamic").exists():
            shutil.copy(build / "watchword-helper-dynamic", libexec / "watchword-helper-dynamic")
            os.chmod(libexec / "watchword-helper-dynamic", 0o755)
        self.etc = base / "etc"
        self.etc.mkdir(mode=0o700)
        policy = "[policy]\nmax_failures = 5\n"
        self.files_config = self.etc / "files.toml"
        self.write(self.files_config, policy)
        self.files_state = base / "state-files"
        pgpass = pg.write_password_file(self.etc / "pgpass")
        store = (f'[store]\nbackend = "postgres"\n\n[store.postgres]\nconninfo = "{pg.conninfo("verify-full")}"\n'
                 f'password_file = "{pgpass}"\noffline = "deny"\n')
        self.hosts = {}
        for name in ("a", "b"):
            config, state = self.etc / f"pg-{name}.toml", base / f"state-pg-{name}"
            self.write(config, policy + "\n" + store)
            state.mkdir(mode=0o700)
            self.hosts[name] = (config, state)
            self.service(f"pg-{name}", state, config)
        if pooler:
            config, state = self.etc / "pg-pool.toml", base / "state-pg-pool"
            self.write(config, policy + f'\n[store]\nbackend = "postgres"\n\n[store.postgres]\nconninfo = "{pooler.conninfo}"\n')
            state.mkdir(mode=0o700)
            self.hosts["pool"] = (config, state)
            self.service("pg-pool", state, config)
        self.service("files", self.files_state, self.files_config)
        (self.services / "permit").write_text("auth required pam_permit.so\n")
        self.populate(users)

    @staticmethod
    def write(path: Path, text: str) -> None:
        path.write_text(text)
        os.chmod(path, 0o600)

    def service(self, name: str, state: Path, config: Path) -> None:
        (self.services / name).write_text(
            f"auth required {MODULE} helper={self.helper} state_dir={state} config={config}\n")

    def ww(self, *args, host: str | None = None, state: Path | None = None) -> subprocess.CompletedProcess:
        config, own_state = self.hosts[host] if host else (self.files_config, self.files_state)
        return run([self.cli, *args, "--state-dir", state or own_state, "--config", config])

    def populate(self, n: int) -> None:
        """n users with one secret in the file store (one enrolled by the CLI, copied for the
        rest, as pam_bench.py does), then all of them imported into the database."""
        self.ww("enroll", "--allow-unknown-user", "u0", "--totp", "--secret", SECRET_B32, "--json")
        users = self.files_state / "users"
        template = (users / "u0").read_text()
        for i in range(1, n):
            p = users / f"u{i}"
            p.write_text(template.replace("\nuser u0\n", f"\nuser u{i}\n"))
            os.chmod(p, 0o600)
        self.ww("store", "init", host="a")
        # import-files marks the directory it reads as a fleet member, which the file store's
        # logins would then refuse: import a copy.
        copy = self.base / "state-import"
        shutil.copytree(self.files_state, copy, symlinks=True)
        t = time.perf_counter()
        self.ww("store", "import-files", host="a", state=copy)
        self.import_s = time.perf_counter() - t
        listed = json.loads(self.ww("list", "--json", host="b").stdout)
        assert len(listed) == n, (len(listed), n)
        os.sync()

    def login(self, service: str, user: str, code: str) -> tuple[float, int]:
        return pamtester_login(self.services, service, user, code)


def bench_latency(f: Fleet, n: int) -> dict:
    """Each round: the floor, then the stores in a rotating order, each with a fresh user."""
    stores = ["files", "pg-a"] + (["pg-pool"] if "pool" in f.hosts else [])
    names = {"permit": "permit", "files": "files", "pg-a": "postgres", "pg-pool": "postgres_pooled"}
    times = {"permit": [], **{names[s]: [] for s in stores}}
    half = n
    for i in range(n):
        code = stable_code()
        order = stores[i % len(stores):] + stores[:i % len(stores)]
        for svc in ["permit", *order]:
            user = f"u{i + half}" if svc == "pg-pool" else f"u{i}"
            ms, rc = f.login(svc, user, code)
            assert rc == 0, (svc, i)
            times[names[svc]].append(ms)
    out = {k: summary(v) for k, v in times.items()}
    for key in ("postgres", "postgres_pooled"):
        if key in out:
            out[f"{key}_minus_files_median_ms"] = round(out[key]["median_ms"] - out["files"]["median_ms"], 3)
            out[f"{key}_minus_files_p99_ms"] = round(out[key]["p99_ms"] - out["files"]["p99_ms"], 3)
    return out


def bench_concurrent(f: Fleet, first: int, logins: int, workers: int) -> dict:
    code = stable_code(margin=20)
    users = [f"u{first + i}" for i in range(logins)]
    wrong = {u for j, u in enumerate(users) if j % 4 == 3}
    bad = f"{(int(code) + 500_000) % 1_000_000:06d}"

    def one(j_u):
        j, u = j_u
        return f.login("pg-a" if j % 2 == 0 else "pg-b", u, bad if u in wrong else code)

    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, enumerate(users)))
    elapsed = time.perf_counter() - t
    right = sum(1 for u, (_, rc) in zip(users, results) if (rc == 0) == (u not in wrong))
    ms = [m for m, _ in results]
    return {"logins": logins, "hosts": 2, "wrong_codes": len(wrong), "wall_s": round(elapsed, 2),
            "throughput_per_s": round(logins / elapsed, 1), "median_ms": round(statistics.median(ms), 1),
            "p99_ms": round(pct(ms, 99), 1), "outcomes_right": f"{right}/{logins}"}


def bench_one_code_race(f: Fleet, user: str, logins: int = 32) -> dict:
    code = stable_code(margin=12)
    with ThreadPoolExecutor(logins) as pool:
        results = list(pool.map(lambda j: f.login("pg-a" if j % 2 == 0 else "pg-b", user, code), range(logins)))
    ok = sum(1 for _, rc in results if rc == 0)
    return {"logins": logins, "hosts": 2, "successes": ok}


def table(r: dict) -> str:
    lat = r["latency"]
    lines = ["", f"fleet_bench: {r['machine']['date']}, {r['machine']['cpus']} CPUs, build {r['machine']['build']}",
             f"  database: PostgreSQL on 127.0.0.1, TLS sslmode=verify-full; {r['users']} users imported "
             f"in {r['import_s']:.2f} s", "",
             f"{'one correct TOTP code, in alternation':<44} {'n':>5} {'median ms':>10} {'p99 ms':>9}"]
    for key, label in (("permit", "pam_permit.so (floor)"), ("files", "watchword, file store"),
                       ("postgres", "watchword, PostgreSQL direct (TLS)"),
                       ("postgres_pooled", "watchword, PostgreSQL via local PgBouncer")):
        if key not in lat:
            continue
        s = lat[key]
        lines.append(f"{label:<44} {s['n']:>5} {s['median_ms']:>10.2f} {s['p99_ms']:>9.2f}")
    for key, label in (("postgres", "direct - file store"), ("postgres_pooled", "via PgBouncer - file store")):
        if f"{key}_minus_files_median_ms" not in lat:
            continue
        d = lat[f"{key}_minus_files_median_ms"]
        target = (f"   target <= +5 ms median: {'met' if d <= 5 else 'NOT met'}" if key == "postgres_pooled" else "")
        lines.append(f"{label:<44} {'':>5} {d:>+10.2f} {lat[f'{key}_minus_files_p99_ms']:>+9.2f}{target}")
    c = r["concurrent"]
    lines += ["", f"{c['logins']} concurrent logins over {c['hosts']} hosts ({c['wrong_codes']} wrong codes): "
                  f"{c['wall_s']} s, {c['throughput_per_s']}/s, median {c['median_ms']} ms, p99 {c['p99_ms']} ms, "
                  f"outcomes right {c['outcomes_right']}"]
    race = r["one_code_race"]
    lines.append(f"one code, {race['logins']} logins at once over {race['hosts']} hosts: {race['successes']} success(es)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="40 logins each instead of 200")
    ap.add_argument("--logins", type=int, help="logins per store in the latency run")
    ap.add_argument("--concurrent", type=int, default=128, help="logins at once over the two hosts")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    if not MODULE.exists():
        sys.exit(f"build the module first: make -C {MODULE.parent}")
    build = build_dir()
    n = args.logins or (40 if args.quick else 200)
    # Latency: u0..u(n-1) for the file store and direct, u(n)..u(2n-1) through PgBouncer;
    # then the concurrent run and the race on users of their own.
    users = 2 * n + args.concurrent + 1
    pg = PgServer(max_connections=max(300, 2 * args.concurrent + 50), durable=True)
    pooler = None
    try:
        pg.start()
        with tempfile.TemporaryDirectory(prefix="ww-fleet-bench-", dir=bench_root()) as tmp:
            if shutil.which("pgbouncer"):
                pooler = PgBouncer(Path(tmp), pg)
            else:
                print("pgbouncer not installed (apt-get install pgbouncer): the pooled row is left out")
            try:
                f = Fleet(Path(tmp), pg, build, users, pooler)
                results = {
                    "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "build": str(build)},
                    "users": users, "import_s": round(f.import_s, 3),
                    "latency": bench_latency(f, n),
                    "concurrent": bench_concurrent(f, 2 * n, args.concurrent, args.concurrent),
                    "one_code_race": bench_one_code_race(f, f"u{users - 1}"),
                }
            finally:
                if pooler:
                    pooler.stop()
    finally:
        pg.close()
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    failed = []
    if results["concurrent"]["outcomes_right"] != f"{args.concurrent}/{args.concurrent}":
        failed.append("concurrent outcomes")
    if results["one_code_race"]["successes"] != 1:
        failed.append("one-code race")
    if failed:
        sys.exit("wrong outcomes: " + ", ".join(failed))


if __name__ == "__main__":
    main()
