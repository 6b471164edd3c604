from pathlib import Path

import pytest

from streamer.config import ConfigError, Mode, load_settings


def test_shipped_default_config_loads():
    settings = load_settings(environ={})
    assert settings.detector.profile == "accurate" and settings.detector.backend == "centerface"
    assert settings.detector.threshold == pytest.approx(0.2)
    assert settings.anonymizer.mode is Mode.blur


def test_environment_overrides_a_nested_key():
    settings = load_settings(environ={"STREAMER_DETECTOR__THRESHOLD": "0.55", "STREAMER_ANONYMIZER__MODE": "fill"})
    assert settings.detector.threshold == pytest.approx(0.55)
    assert settings.anonymizer.mode is Mode.fill


def test_invalid_value_names_the_key(tmp_path: Path):
    config = tmp_path / "bad.yaml"
    config.write_text("anonymizer:\n  padding: 0.5\n")
    with pytest.raises(ConfigError, match=r"anonymizer\.padding"):
        load_settings(config, environ={})


def test_unknown_key_is_refused_with_its_name(tmp_path: Path):
    config = tmp_path / "typo.yaml"
    config.write_text("detector:\n  treshold: 0.4\n")
    with pytest.raises(ConfigError, match=r"detector\.treshold"):
        load_settings(config, environ={})


def test_bad_environment_override_names_the_key():
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_settings(environ={"STREAMER_SERVER__PORT": "not-a-port"})


def test_missing_config_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.yaml", environ={})
