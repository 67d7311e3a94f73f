"""The outcome table has one source: pam/outcomes.def, which the module compiles in.

The helper's Swift `LoginOutcome` (its raw values and `exitStatus`) and the table in
docs/helper-protocol.md are written by hand; these tests hold them to the source field by
field, in order, and say what to update. Adding an outcome: add its line to
pam/outcomes.def, run this file, and do what its failures name."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO_ROOT

DEF = REPO_ROOT / "pam" / "outcomes.def"
DOC = REPO_ROOT / "docs" / "helper-protocol.md"
SOURCES = REPO_ROOT / "Sources"


def outcomes_def(text: str) -> list[dict]:
    """WW_OUTCOME(word, status, pam, pam_nullok) lines of pam/outcomes.def."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("WW_OUTCOME("):
            continue
        m = re.fullmatch(r"WW_OUTCOME\((\w+), (\d+), (PAM_\w+), (PAM_\w+)\)", line)
        assert m, f"pam/outcomes.def: cannot read {line!r}"
        rows.append({"word": m[1], "status": int(m[2]), "pam": m[3], "pam_nullok": m[4]})
    return rows


def swift_outcomes() -> tuple[Path, list[dict]]:
    """`enum LoginOutcome` wherever it is under Sources/: its cases' raw values in order,
    and each case's `exitStatus`."""
    for path in sorted(SOURCES.rglob("*.swift")):
        m = re.search(r"enum LoginOutcome\b[^{]*\{(.*?)\n\}", path.read_text(), re.S)
        if m is None:
            continue
        cases = re.findall(r'^\s*case (\w+)(?: = "([^"]*)")?\s*$', m[1], re.M)
        statuses = dict(re.findall(r"^\s*case \.(\w+): (\d+)\s*$", m[1], re.M))
        return path, [{"case": name, "word": raw or name,
                       "status": int(statuses[name]) if name in statuses else None}
                      for name, raw in cases]
    raise AssertionError("no `enum LoginOutcome` under Sources/")


def doc_outcomes(text: str) -> list[dict]:
    """The rows of the table under "## Outcome and exit status"."""
    section = text.split("## Outcome and exit status", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        m = re.fullmatch(r"\| `(\w+)` \| (\d+) \| (PAM_\w+)(?:, or (PAM_\w+) with `nullok`)? \|",
                         line.strip())
        if m:
            rows.append({"word": m[1], "status": int(m[2]), "pam": m[3],
                         "pam_nullok": m[4] or m[3]})
    return rows


def check_swift(source: list[dict], swift: list[dict], where: str) -> None:
    fix = (f"make `LoginOutcome` in {where} say what pam/outcomes.def says: one case per "
           "WW_OUTCOME line, in its order, raw value the word, `exitStatus` the status")
    assert [o["word"] for o in swift] == [o["word"] for o in source], fix
    for s, o in zip(swift, source):
        assert s["status"] == o["status"], f"{o['word']}: exit status {s['status']}, " \
                                           f"pam/outcomes.def says {o['status']}; {fix}"


def check_doc(source: list[dict], doc: list[dict]) -> None:
    fix = ("make the table under \"Outcome and exit status\" in docs/helper-protocol.md say "
           "what pam/outcomes.def says: one row per WW_OUTCOME line, in its order, "
           "`| `word` | status | PAM result[, or PAM result with `nullok`] |`")
    assert [o["word"] for o in doc] == [o["word"] for o in source], fix
    for d, o in zip(doc, source):
        for field in ("status", "pam", "pam_nullok"):
            assert d[field] == o[field], f"{o['word']}: {field} {d[field]} in the doc, " \
                                         f"{o[field]} in pam/outcomes.def; {fix}"


def test_the_source_is_well_formed():
    source = outcomes_def(DEF.read_text())
    assert source, "pam/outcomes.def defines no outcome"
    assert source[0]["word"] == "success" and source[0]["pam"] == "PAM_SUCCESS"
    statuses = [o["status"] for o in source]
    assert len(set(statuses)) == len(statuses), "two outcomes share an exit status"
    # 127: the child could not exec the helper; above 125 the shell's and signals' own
    assert all(0 <= s <= 125 for s in statuses), statuses
    words = [o["word"] for o in source]
    assert len(set(words)) == len(words), "an outcome is defined twice"
    # success only from the success line: no other outcome may grant a login
    assert all(o["pam"] != "PAM_SUCCESS" and o["pam_nullok"] != "PAM_SUCCESS"
               for o in source[1:])


def test_the_helpers_outcomes_match_the_source():
    path, swift = swift_outcomes()
    check_swift(outcomes_def(DEF.read_text()), swift, str(path.relative_to(REPO_ROOT)))


def test_the_protocol_documents_the_source():
    check_doc(outcomes_def(DEF.read_text()), doc_outcomes(DOC.read_text()))


# ---- the checks above can fail: each field changed in turn must be caught ------------

def test_a_changed_field_anywhere_is_caught():
    source = outcomes_def(DEF.read_text())
    _, swift = swift_outcomes()
    doc = doc_outcomes(DOC.read_text())
    check_swift(source, swift, "-")
    check_doc(source, doc)

    def changed(rows, i, field, value):
        rows = [dict(r) for r in rows]
        rows[i][field] = value
        return rows

    for i in range(len(source)):
        for rows, field, value in [(swift, "status", 99), (swift, "word", "other"),
                                   (doc, "status", 99), (doc, "word", "other"),
                                   (doc, "pam", "PAM_OTHER"), (doc, "pam_nullok", "PAM_OTHER")]:
            with pytest.raises(AssertionError):
                (check_swift(source, changed(rows, i, field, value), "-") if rows is swift
                 else check_doc(source, changed(rows, i, field, value)))
    # an outcome added to the source only
    added = source + [{"word": "locked", "status": 15, "pam": "PAM_MAXTRIES",
                       "pam_nullok": "PAM_MAXTRIES"}]
    with pytest.raises(AssertionError):
        check_swift(added, swift, "-")
    with pytest.raises(AssertionError):
        check_doc(added, doc)
