"""Translations: the German catalogue is complete and compiled."""

from __future__ import annotations

import re
from pathlib import Path

import polib

LOCALE = Path(__file__).resolve().parent.parent / "locale" / "de" / "LC_MESSAGES"


def test_every_string_is_translated_to_german():
    po = polib.pofile(str(LOCALE / "django.po"))
    assert len(po) > 250
    assert not po.untranslated_entries()
    assert not po.fuzzy_entries()


def test_placeholders_survive_translation():
    for entry in polib.pofile(str(LOCALE / "django.po")):
        wanted = sorted(re.findall(r"%\(\w+\)[sd]", entry.msgid))
        assert sorted(re.findall(r"%\(\w+\)[sd]", entry.msgstr)) == wanted, entry.msgid


def test_the_compiled_catalogue_is_current():
    mo = polib.mofile(str(LOCALE / "django.mo"))
    po = polib.pofile(str(LOCALE / "django.po"))
    assert {e.msgid: e.msgstr for e in mo} == {e.msgid: e.msgstr for e in po if not e.obsolete}


def test_the_catalogue_holds_every_string_of_the_sources(tmp_path):
    """makemessages on a copy of the sources finds nothing the catalogue lacks."""
    import shutil
    import subprocess
    import sys

    root = LOCALE.parents[2]
    copy = tmp_path / "src"
    shutil.copytree(
        root,
        copy,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "var", "tests", "bench", "*.mo", "__pycache__", ".*_cache"
        ),
    )
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "de", "--no-obsolete"],
        cwd=copy,
        check=True,
        capture_output=True,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "attester.settings",
            "VAR_DIR": str(tmp_path / "var"),
        },
    )
    extracted = {e.msgid for e in polib.pofile(str(copy / "locale" / "de" / "LC_MESSAGES" / "django.po"))}
    ours = {e.msgid for e in polib.pofile(str(LOCALE / "django.po")) if e.msgstr}
    assert len(extracted) > 250  # the extraction itself worked
    assert not extracted - ours, f"untranslated: {sorted(extracted - ours)}"
