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
