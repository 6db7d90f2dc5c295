"""A rename to a name another label took a moment ago (after the clash check, before the save:
two renames at once) is refused with the reason, not a database error."""

from __future__ import annotations

import pytest

from gallery import services
from gallery.labels import InvalidLabels
from gallery.models import Label

pytestmark = pytest.mark.django_db


def test_a_rename_racing_another_to_the_same_name_is_refused_with_the_reason(monkeypatch):
    Label.objects.create(name="sunset")
    dawn = Label.objects.create(name="dawn")
    # The check finds no clash, as when the other rename commits right after it.
    monkeypatch.setattr(Label.objects, "named", lambda name: Label.objects.none())
    with pytest.raises(InvalidLabels, match="already exists"):
        services.label_rename(label=dawn, name="Sunset")
    monkeypatch.undo()
    assert Label.objects.get(pk=dawn.pk).name == "dawn"
    assert sorted(Label.objects.values_list("name", flat=True)) == ["dawn", "sunset"]
