"""Configuration: strict parsing, errors that name file, key path and value, the example file."""

import os
import re
from pathlib import Path

import pytest

from comparimg import config
from comparimg.model import ConfigError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "comparimg.example.yaml"


def write(tmp_path, text):
    path = tmp_path / "comparimg.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def bare_home(monkeypatch, tmp_path):
    """Return a temporary HOME with no XDG folder and no $STATE_DIRECTORY set."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("STATE_DIRECTORY", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_defaults_need_no_file(bare_home, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    settings = config.load_settings(None)
    assert settings.index_path == tmp_path / "comparimg" / "index.sqlite3"
    assert settings.matching.threshold == 10
    assert settings.http.host == "127.0.0.1"
    assert settings.scan_roots() == settings.root_paths()


def test_state_directory_wins(monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/comparimg:/other")
    assert config.Settings().index_path == Path("/var/lib/comparimg/index.sqlite3")


def test_state_lives_in_the_xdg_state_folder(bare_home):
    assert config.state_dir() == bare_home / ".local/state/comparimg"
    settings = config.Settings()
    assert settings.http.token_file == bare_home / ".local/state/comparimg/token"
    assert settings.sorter.trash_dir == bare_home / ".local/state/comparimg/trash"


def test_a_relative_xdg_state_home_is_ignored_as_the_spec_says(bare_home, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")
    assert config.state_dir() == bare_home / ".local/state/comparimg"


def test_the_state_folder_of_an_older_release_stays_in_use(bare_home):
    legacy = bare_home / ".local/share/comparimg"
    legacy.mkdir(parents=True)
    assert config.state_dir() == legacy
    (bare_home / ".local/state/comparimg").mkdir(parents=True)
    assert config.state_dir() == bare_home / ".local/state/comparimg"


def test_the_user_service_configuration_follows_xdg_config_home(bare_home, monkeypatch):
    assert config.user_config_file() == bare_home / ".config/comparimg/comparimg.yaml"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(bare_home / "cfg"))
    assert config.user_config_file() == bare_home / "cfg/comparimg/comparimg.yaml"


def test_example_file_loads_and_documents_every_setting():
    settings = config.load_settings(EXAMPLE)
    assert settings.source == str(EXAMPLE)
    text = EXAMPLE.read_text()
    for key_path in config.documented_keys():
        leaf = key_path.split(".")[-1].replace("roots[]", "").lstrip(".") or key_path
        line = next(
            (line for line in text.splitlines() if re.match(rf"\s*-?\s*{re.escape(leaf)}:", line)), None
        )
        assert line is not None, f"{key_path} is missing from {EXAMPLE.name}"
    # every setting's value in the example is its default (apart from paths written with ~)
    defaults = config.settings_to_dict(config.Settings())
    example = config.settings_to_dict(settings)
    for section in ("hashing", "matching", "watch", "sorter", "logging"):
        for key, value in example[section].items():
            if key != "trash":
                assert value == defaults[section][key], f"{section}.{key}"


def test_full_file_parses(tmp_path):
    path = write(
        tmp_path,
        """
roots:
  - /photos
  - {path: masters, reference: true}
index: db/index.sqlite3
export: null
matching: {threshold: 6, crops: false}
watch: {settle_seconds: 1, exclude: ["*.tmp"]}
http: {listen: "0.0.0.0:9000", allowed_hosts: [photos.lan]}
sorter: {trash: /trash, move_targets: {archive: /archive}, apply: on-decide}
""",
    )
    settings = config.load_settings(path)
    assert settings.roots[0] == config.RootSettings(Path("/photos"), False)
    assert settings.roots[1] == config.RootSettings(tmp_path / "masters", True)
    assert settings.index_path == tmp_path / "db" / "index.sqlite3"
    assert settings.export_path is None
    assert (settings.matching.threshold, settings.matching.crops) == (6, False)
    assert settings.watch.settle_seconds == 1.0 and isinstance(settings.watch.settle_seconds, float)
    assert (settings.http.host, settings.http.port) == ("0.0.0.0", 9000)
    assert settings.sorter.move_targets["archive"] == Path("/archive")
    assert settings.sorter.trash_dir == Path("/trash")


@pytest.mark.parametrize(
    ("text", "key_path", "value"),
    [
        ("bogus: 1", "bogus", "1"),
        ("matching: {threshold: 99}", "matching.threshold", "99"),
        ("matching: {threshold: '10'}", "matching.threshold", "'10'"),
        ("matching: {threshold: true}", "matching.threshold", "True"),
        ("matching: {colour: 3}", "matching.colour", "3"),
        ("watch: {observer: fancy}", "watch.observer", "'fancy'"),
        ("http: {listen: nowhere}", "http.listen", "'nowhere'"),
        ("http: {listen: 'host:99999'}", "http.listen", "'host:99999'"),
        ("roots: /photos", "roots", "'/photos'"),
        ("roots: [{reference: true}]", "roots[0]", "{'reference': True}"),
        ("roots: [{path: /p, extra: 1}]", "roots[0].extra", "1"),
        ("sorter: {move_targets: {'a/b': /x}}", "sorter.move_targets.a/b", "'a/b'"),
        ("watch: {include: '*.jpg'}", "watch.include", "'*.jpg'"),
        ("- just\n- a list", "<top>", "['just', 'a list']"),
    ],
)
def test_bad_values_name_file_key_and_value(tmp_path, text, key_path, value):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        config.load_settings(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: at '{key_path}':"), message
    assert f"(got {value})" in message, message


def test_every_error_of_a_file_is_reported_at_once(tmp_path):
    path = write(
        tmp_path, "roots: [{path: /p, extra: 1}]\nmatching: {threshold: -1}\nsorter: {apply: later}\n"
    )
    with pytest.raises(ConfigError) as caught:
        config.load_settings(path)
    problems = [(p.source, p.key_path, p.value) for p in caught.value.problems]
    assert problems == [
        (str(path), "roots[0].extra", 1),
        (str(path), "matching.threshold", -1),
        (str(path), "sorter.apply", "later"),
    ]
    assert str(caught.value).splitlines() == [p.line for p in caught.value.problems]


def test_the_config_schema_is_the_one_the_file_is_validated_with():
    schema = config.config_json_schema()
    matching = schema["$defs"]["MatchingSettings"]["properties"]["threshold"]
    assert (matching["minimum"], matching["maximum"], matching["default"]) == (0, 32, 10)
    assert schema["$defs"]["SorterSettings"]["properties"]["apply"]["enum"] == ["manual", "on-decide"]
    assert set(schema["properties"]) == {key for key in config.documented_keys() if "." not in key}
    assert "source" not in schema["properties"]


def test_yaml_syntax_error_and_python_tags_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"not valid YAML.*line 1"):
        config.load_settings(write(tmp_path, "matching: {threshold: [1, 2}"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load_settings(write(tmp_path, "roots: !!python/object/apply:os.system ['true']"))


def test_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the file"):
        config.load_settings(tmp_path / "missing.yaml")


def test_round_trip_save_and_patch(tmp_path):
    settings = config.load_settings(EXAMPLE)
    patched = config.apply_patch(settings, {"matching": {"threshold": 4}, "sorter": {"apply": "on-decide"}})
    assert patched.matching.threshold == 4 and patched.matching.orientations is True
    assert patched.sorter.apply == "on-decide"
    target = tmp_path / "saved" / "config.yaml"
    config.save_settings(patched, target)
    again = config.load_settings(target)
    assert config.settings_to_dict(again) == config.settings_to_dict(patched)
    assert [p.name for p in target.parent.iterdir()] == ["config.yaml"]  # no temp file left behind


def test_patch_is_validated_like_the_file():
    with pytest.raises(ConfigError, match=r"at 'matching.threshold'"):
        config.apply_patch(config.Settings(), {"matching": {"threshold": -1}})
    with pytest.raises(ConfigError, match=r"at 'nonsense'"):
        config.apply_patch(config.Settings(), {"nonsense": 1})


def test_environment_variables_expand(tmp_path, monkeypatch):
    monkeypatch.setenv("PHOTO_HOME", "/srv/photos")
    settings = config.load_settings(write(tmp_path, "roots: [$PHOTO_HOME/family]"))
    assert settings.roots[0].path == Path("/srv/photos/family")
    assert os.path.isabs(settings.index_path)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:8765"),
        ("", "http://127.0.0.1:8765"),
        ("::", "http://[::1]:8765"),
        ("::1", "http://[::1]:8765"),
        ("192.168.1.20", "http://192.168.1.20:8765"),
        ("photos.local", "http://photos.local:8765"),
    ],
)
def test_a_local_client_reaches_a_wildcard_address_through_loopback(host, url):
    assert config.reachable_base_url(host, 8765) == url


def test_a_path_belongs_to_its_deepest_root_and_a_sibling_prefix_is_not_inside():
    roots = ["/photos", "/photos/phone", "/photo"]
    assert config.deepest_root("/photos/phone/a.jpg", roots) == "/photos/phone"
    assert config.deepest_root("/photos/b.jpg", roots) == "/photos"
    assert config.deepest_root("/photos-old/c.jpg", roots) is None
    assert config.deepest_root("/photos", roots) == "/photos"  # a root holds itself
    assert config.is_inside("/a/b", "/a/") and not config.is_inside("/ab", "/a")
