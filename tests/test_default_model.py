"""Which model a new index gets: the default for the user's language (the locale, or --language), an
installed model that scores at least as well, and what `status` says of an index built with another.
No hub, no model run: installed bundles are folders with a manifest naming their source."""

from __future__ import annotations

import json

import pytest

from mmsearch import api, arguments, paths, settings
from mmsearch.errors import InvalidArgument
from mmsearch.models import catalogue


@pytest.mark.parametrize("value, code", [
    ("zh_CN.UTF-8", "zh"), ("en_US.UTF-8", "en"), ("pt-BR", "pt"), ("de_DE@euro", "de"), ("ZH", "zh"),
    ("C", None), ("C.UTF-8", None), ("POSIX", None), ("", None),
])
def test_a_locale_names_its_language(value, code):
    assert settings.language_code(value) == code


def test_the_locale_is_read_in_posix_order(monkeypatch):
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    monkeypatch.setenv("LC_MESSAGES", "ja_JP.UTF-8")
    monkeypatch.setenv("LC_ALL", "zh_CN.UTF-8")
    assert (settings.current().language, settings.current().locale) == ("zh", "LC_ALL=zh_CN.UTF-8")
    monkeypatch.setenv("LC_ALL", "")  # empty counts as unset
    assert settings.current().language == "ja"
    monkeypatch.delenv("LC_MESSAGES")
    monkeypatch.delenv("LC_ALL")
    assert settings.current().language == "en"
    monkeypatch.setenv("LANG", "C.UTF-8")
    assert settings.current().language is None


def test_language_option_is_checked():
    assert arguments.language(" zh_TW ") == "zh"
    with pytest.raises(InvalidArgument, match="ISO 639 code"):
        arguments.language("klingon!")


def test_each_language_has_its_default_with_published_recall():
    english, chinese = catalogue.default("en"), catalogue.default("zh")
    assert english.name == paths.DEFAULT_MODEL == catalogue.default(None).name == "immich-vit-b-32-laion2b"
    assert chinese.name == paths.MULTILINGUAL_DEFAULT_MODEL == catalogue.default("ja").name
    assert english.recall["en"] == 68.78 > catalogue.find(paths.EARLIER_DEFAULT_MODEL).recall["en"] == 59.37
    assert chinese.recall["zh"] == 72.52 > catalogue.find("immich-siglip2-b-16").recall["zh"]
    alternatives = catalogue.alternatives("zh", besides=chinese.name)
    assert [e.name for e in alternatives][:2] == ["chinese-clip-b-16", "immich-siglip2-b-16"]
    assert catalogue.known("clip-vit-base-patch32").name == "clip-vit-b-32"  # the exported earlier default


def _install(home, name: str, source: str | None) -> None:
    folder = home / "models" / name
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"name": name, "source": source}))


def test_a_new_index_gets_the_languages_default_or_an_installed_model_as_good(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSEARCH_HOME", str(tmp_path))
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    assert api.default_model() == "immich-xlm-roberta-b-32" and not api.default_model_installed()
    _install(tmp_path, "clip-vit-b-32", "Xenova/clip-vit-base-patch32")  # the earlier default: under 68.78%
    _install(tmp_path, "immich-vit-b-32-laion2b", "immich-app/ViT-B-32__laion2b-s34b-b79k")
    assert api.default_model() == "immich-xlm-roberta-b-32"  # English's default has no figure in Chinese
    assert api.default_model("en") == "immich-vit-b-32-laion2b"
    _install(tmp_path, "siglip", "immich-app/ViT-B-16-SigLIP__webli")  # 71.64% in English, by its source
    assert api.default_model("en") == "immich-vit-b-32-laion2b"  # the default itself comes first
    (tmp_path / "models" / "immich-vit-b-32-laion2b" / "manifest.json").unlink()
    assert api.default_model("en") == "siglip"
    _install(tmp_path, "immich-xlm-roberta-b-32", "immich-app/XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k")
    assert api.default_model() == "immich-xlm-roberta-b-32" and api.default_model_installed()


def test_status_names_a_better_default_only_where_one_is_published(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSEARCH_HOME", str(tmp_path))
    better = api.newer_default("clip-vit-base-patch32", None, "en")
    assert (better["model"], better["recall"], better["index_recall"]) == ("immich-vit-b-32-laion2b", 68.78, 59.37)
    assert "re-index into a new folder" in better["note"]
    assert api.newer_default("immich-vit-b-32-laion2b", None, "en") is None  # the default itself
    assert api.newer_default("immich-siglip2-b-16", None, "en") is None  # scores more than the default
    assert api.newer_default("toyclip", None, "en") is None  # a model of one's own: nothing to compare
    chinese = api.newer_default("immich-vit-b-32-laion2b", None, "zh")
    assert chinese["model"] == "immich-xlm-roberta-b-32" and chinese["index_recall"] is None
    # a bundle installed under another name is known by the source its manifest names
    _install(tmp_path, "mine", "Xenova/clip-vit-base-patch32")
    assert api.newer_default("mine", str(tmp_path / "models" / "mine"), "en")["index_recall"] == 59.37
