from pathlib import Path

import pytest

from streamer.config import ConfigError, Mode, load_settings


def test_shipped_default_config_loads():
    settings = load_settings()
    assert settings.detector.profile == "accurate" and settings.detector.backend == "centerface"
    assert settings.detector.threshold == pytest.approx(0.2)
    assert settings.anonymizer.mode is Mode.blur


def test_environment_overrides_a_nested_key(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STREAMER_DETECTOR__THRESHOLD", "0.55")
    monkeypatch.setenv("STREAMER_ANONYMIZER__MODE", "fill")
    settings = load_settings()
    assert settings.detector.threshold == pytest.approx(0.55)
    assert settings.anonymizer.mode is Mode.fill


def test_invalid_value_names_the_key(tmp_path: Path):
    config = tmp_path / "bad.yaml"
    config.write_text("anonymizer:\n  padding: 0.5\n")
    with pytest.raises(ConfigError, match=r"anonymizer\.padding"):
        load_settings(config)


def test_unknown_key_is_refused_with_its_name(tmp_path: Path):
    config = tmp_path / "typo.yaml"
    config.write_text("detector:\n  treshold: 0.4\n")
    with pytest.raises(ConfigError, match=r"detector\.treshold"):
        load_settings(config)


def test_bad_environment_override_names_the_key(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STREAMER_SERVER__PORT", "not-a-port")
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_settings()


def test_missing_config_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.yaml")


def test_environment_lists_are_yaml(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STREAMER_WEBRTC__CODECS", "[vp8]")
    monkeypatch.setenv("STREAMER_PIPELINE__RECONNECT_BACKOFF_S", "[0.5, 2]")
    settings = load_settings()
    assert settings.webrtc.codecs == ("vp8",)
    assert settings.pipeline.reconnect_backoff_s == (0.5, 2)


@pytest.mark.parametrize("name, key", [
    ("STREAMER_DETECTR__THRESHOLD", "detectr"),
    ("STREAMER_DETECTOR__TRESHOLD", r"detector\.treshold"),
])
def test_misspelt_environment_variable_is_refused_with_its_name(monkeypatch: pytest.MonkeyPatch, name: str, key: str):
    monkeypatch.setenv(name, "0.4")
    with pytest.raises(ConfigError, match=key):
        load_settings()


def test_camera_file_paths_are_relative_to_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = tmp_path / "site" / "streamer.yaml"
    config.parent.mkdir()
    config.write_text(
        "cameras:\n"
        "  - {name: lobby, source: clips/lobby.mp4}\n"
        "  - {name: gate, source: 'rtsp://cam/gate'}\n"
        "  - {name: usb, source: /dev/video0}\n"
    )
    monkeypatch.chdir(tmp_path)
    sources = [camera.source for camera in load_settings(config).cameras]
    assert sources == [str(tmp_path / "site" / "clips" / "lobby.mp4"), "rtsp://cam/gate", "/dev/video0"]


def test_the_shipped_demo_camera_is_found_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (demo,) = load_settings().cameras
    assert Path(demo.source).is_file()


def test_unparseable_environment_list_names_the_key(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STREAMER_WEBRTC__CODECS", "[h264")
    with pytest.raises(ConfigError, match="CODECS: '\\[h264' is not valid YAML"):
        load_settings()


def test_drawn_zones_are_kept_beside_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = tmp_path / "site" / "streamer.yaml"
    config.parent.mkdir()
    config.write_text("server: {port: 8001}\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings(config).pipeline.zones_file == str(tmp_path / "site" / "zones.yaml")
    assert load_settings().pipeline.zones_file == "zones.yaml"  # the shipped config: the working directory
