"""Typed settings: one YAML file (``streamer/default.yaml``) plus ``STREAMER_*`` environment overrides.

Every key lives in one pydantic model so that a typo or a bad value stops the program at start
with a message naming the key, instead of surfacing as odd behaviour later. pydantic-settings
reads the environment (``STREAMER_<SECTION>__<KEY>``, over the file); this module reads the file.
"""

from __future__ import annotations

import ipaddress
import os
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from .redact import redact
from .shards import parse_shard

ENV_PREFIX = "STREAMER_"
ENV_NESTING = "__"
CONFIG_ENV = "STREAMER_CONFIG"
SOURCE_SCHEMES = ("rtsp", "rtsps", "pattern")  # URL schemes a camera source may have; else a device or file
DEFAULT_CONFIG = Path(__file__).resolve().parent / "default.yaml"  # shipped in the package


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Mode(str, Enum):
    blur = "blur"
    pixelate = "pixelate"
    fill = "fill"


class Shape(str, Enum):
    box = "box"
    ellipse = "ellipse"


# Named detector settings. A profile fills in every detector key that is not set explicitly; keys that
# are set override it. Measured on faces-dev and the shared clips: see README, "Accuracy".
DETECTOR_PROFILES: dict[str, dict[str, Any]] = {
    # MediaPipe BlazeFace: ~5 ms a frame, finds faces from ~1/20 of the image height up.
    "fast": {"backend": "mediapipe", "threshold": 0.3, "scale": 1.0, "max_pixels": 0, "int8": False, "coarse_pixels": 0},
    # CenterFace in float on the image upscaled 2.5x (network input at most 2.5 MP): still images, files.
    # Float, because int8 here cost a point of privacy recall (README, Accuracy).
    # Plus a coarse pass at about 0.3 MP for faces too large for the upscaled image.
    "accurate": {
        "backend": "centerface", "threshold": 0.2, "scale": 2.5, "max_pixels": 2_500_000, "int8": False,
        "coarse_pixels": 300_000,
    },
    # CenterFace in int8 on the frame resized to about 0.5 MP (960x540 for 720p and 1080p): live cameras.
    # Plus a coarse pass at about 0.13 MP (480x270) for large and blurred faces.
    "realtime": {
        "backend": "centerface", "threshold": 0.2, "scale": 1.0, "max_pixels": 520_000, "int8": True,
        "coarse_pixels": 130_000,
    },
}


class DetectorSettings(Strict):
    """The detector for still images and video files; ``profile`` fills in the keys left unset."""

    DEFAULT_PROFILE: ClassVar[str] = "accurate"

    profile: str = Field("accurate", description=f"one of {', '.join(DETECTOR_PROFILES)}: defaults for the keys below")
    backend: str = "centerface"
    threshold: float = Field(0.2, ge=0.0, le=1.0)
    scale: float = Field(
        2.5, gt=0.0, le=4.0,
        description="centerface: image resize factor before detection; >1 finds smaller faces, cost grows with its square",
    )
    max_pixels: int = Field(
        2_500_000, ge=0,
        description="centerface: most pixels the network sees; a larger resized image is resized less (0: 16 MP)",
    )
    int8: bool = Field(
        False, description="centerface: run the model quantized to 8-bit integers (faster on CPUs with VNNI)"
    )
    coarse_pixels: int = Field(
        0, ge=0, description="centerface: also detect on the image shrunk to this many pixels (large, blurred faces); 0 = off",
    )
    coarse_threshold: float = Field(0.3, ge=0.0, le=1.0, description="centerface: minimum score of the coarse pass")
    threads: int = Field(1, ge=1, le=64, description="centerface: onnxruntime intra-op threads per detector")
    model_dir: str = Field("", description="folder of prepared models; empty means <sys.prefix>/share/streamer/models")

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        name = data.get("profile") or cls.DEFAULT_PROFILE
        if name not in DETECTOR_PROFILES:
            raise ValueError(f"profile: unknown profile {name!r} (known: {', '.join(DETECTOR_PROFILES)})")
        explicit = {key: value for key, value in data.items() if value is not None}
        return {**DETECTOR_PROFILES[name], **explicit, "profile": name}


class LiveDetectorSettings(DetectorSettings):
    """The detector of live cameras (``pipeline.detector``): the realtime profile unless told otherwise."""

    DEFAULT_PROFILE: ClassVar[str] = "realtime"

    profile: str = Field("realtime", description=f"one of {', '.join(DETECTOR_PROFILES)}")


class AnonymizerSettings(Strict):
    mode: Mode = Mode.blur
    padding: float = Field(1.4, ge=1.0, le=4.0, description="scale factor applied around each box")
    padding_below: float = Field(
        0.75, ge=0.0, le=1.0,
        description="share of the height padding adds that goes below the box (chin, mask); 0.5 = centred",
    )
    shape: Shape = Shape.box
    blur_strength: float = Field(
        0.5, gt=0.0, le=2.0, description="Gaussian sigma as a fraction of the region's larger side / 3"
    )
    pixelate_blocks: int = Field(8, ge=2, le=64, description="mosaic cells across the region's larger side")
    fill_color: tuple[int, int, int] = (0, 0, 0)
    audit: bool = False
    audit_color: tuple[int, int, int] = (0, 255, 0)


class ImageSettings(Strict):
    max_bytes: int = Field(20 * 1024 * 1024, gt=0)
    max_pixels: int = Field(40_000_000, gt=0)
    jpeg_quality: int = Field(90, ge=1, le=100)
    webp_quality: int = Field(90, ge=1, le=100)


class ServerSettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(0, ge=0, description="CPU worker threads; 0 means one per core")
    queue_size: int = Field(16, ge=0, description="requests that may wait for a worker before 503")
    max_wait_s: float = Field(
        1.0, gt=0,
        description="a request that would wait longer than this for a worker (predicted from recent jobs' "
        "times) gets 503; one that waited twice as long is dropped",
    )
    max_uploads: int = Field(
        32, ge=1,
        description="still-image requests held at once (uploading, queued or worked on); beyond, 503 before "
        "the body is read, so upload memory stays under max_uploads x image.max_bytes",
    )
    max_streams: int = Field(64, ge=1, description="open MJPEG streams over all cameras; more get 503")
    shutdown_grace_s: float = Field(
        5.0, ge=0, le=120, description="on SIGTERM, open requests and streams get this long before they are cut"
    )
    body_timeout_s: float = Field(
        30.0, gt=0, le=600,
        description="a request body (image upload, WebRTC offer) must arrive within this; slower gets 408",
    )
    max_streams_per_user: int = Field(
        8, ge=1, description="MJPEG streams and WebRTC sessions one user (or, without users, one address) may hold"
    )
    tls_cert: str = Field("", description="PEM certificate (chain) file: serve HTTPS; needs tls_key")
    tls_key: str = Field("", description="PEM private key file of tls_cert")
    allowed_hosts: tuple[str, ...] = Field(
        (), description="Host header values accepted (* wildcards); empty = localhost names when listening on "
        "loopback, else any"
    )
    cors_origins: tuple[str, ...] = Field((), description="origins allowed to call the API from a browser; empty = same origin only")
    log_level: str = "info"
    shard: str = Field(
        "", description="I/N: run only the cameras whose names hash to shard I of N (streamer.shards); "
        "ordinal/N: I is the host name's trailing -<number> (a StatefulSet pod's ordinal); empty: every camera",
    )
    shard_url: str = Field(
        "", description="the URL of the server of shard {shard}, for GET /api/shards; empty: not given "
        "(e.g. http://streamer-cameras-{shard}.streamer-cameras:8000)",
    )

    @field_validator("shard")
    @classmethod
    def _known_shard(cls, text: str) -> str:
        if not text:
            return text
        index, count = parse_shard(text)
        return f"{index}/{count}"  # ordinal/N resolved here, once

    @field_validator("shard_url")
    @classmethod
    def _url_template(cls, template: str) -> str:
        try:
            template.format(shard=0)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{template!r}: only {{shard}} may be filled in ({exc!r})") from None
        return template

    @property
    def shards(self) -> tuple[int, int]:
        """(I, N): this server's shard and the number of shards; (0, 1) when not sharded."""
        return parse_shard(self.shard) if self.shard else (0, 1)

    @model_validator(mode="after")
    def _tls_pair(self) -> "ServerSettings":
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        return self


class AuthSettings(Strict):
    """Users, their sessions and the audit log (README, Security)."""

    users_file: str = Field(
        "", description="YAML file of users (``streamer users``); empty = no users, allowed on loopback only"
    )
    session_ttl_s: float = Field(43200, gt=0, description="a login (cookie or token) lasts this long")
    login_failures: int = Field(5, ge=1, description="failed logins an address may make per login_window_s; more get 429")
    login_window_s: float = Field(60, gt=0)
    trusted_proxies: tuple[str, ...] = Field(
        (), description="addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed"
    )
    audit_log: str = Field("", description="file the audit log is appended to; empty = the process's log only")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, proxies: tuple[str, ...]) -> tuple[str, ...]:
        for proxy in proxies:
            ipaddress.ip_network(proxy, strict=False)  # ValueError names the bad one
        return proxies


class FailMode(str, Enum):
    blur = "blur"
    black = "black"


class ZoneSettings(Strict):
    """A privacy zone: a polygon of the camera's picture that every output hides, always."""

    points: tuple[tuple[float, float], ...] = Field(
        min_length=3, max_length=64, description="corners as [x, y] fractions of the picture's width and height (0..1)"
    )
    mode: FailMode = Field(FailMode.black, description="black, or blur (nothing recognisable, light and motion kept)")

    @field_validator("points")
    @classmethod
    def _inside_the_picture(cls, points: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        if any(not (0.0 <= v <= 1.0) for point in points for v in point):
            raise ValueError("points are fractions of the picture: x and y from 0 to 1")
        return points


class CameraSettings(Strict):
    """One live source. ``source`` is an ``rtsp://`` URL, a ``/dev/videoN`` device or a video file."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    source: str = Field(min_length=1, repr=False)  # may hold a password: never in a repr
    loop: bool = Field(True, description="files only: start again at the end")
    realtime: bool = Field(True, description="files only: pace frames at the file's own rate")
    enabled: bool = True
    zones: tuple[ZoneSettings, ...] = Field(
        (), description="privacy zones; an entry for this camera in pipeline.zones_file replaces them"
    )

    @field_validator("source")
    @classmethod
    def _known_scheme(cls, source: str) -> str:
        scheme, sep, _ = source.partition("://")
        if sep and scheme.lower() not in SOURCE_SCHEMES:
            raise ValueError(
                f"{redact(source)}: {scheme}:// is not a camera source; use rtsp://, rtsps://, "
                "pattern://, /dev/videoN or a video file path"
            )
        return source


class PipelineSettings(Strict):
    detect_fps: float = Field(0.0, ge=0.0, description="most detections a second per camera; 0 = as fast as it goes")
    detect_workers: int = Field(
        0, ge=0, le=64,
        description="detector threads shared by every camera, served in turn; 0 = one per core",
    )
    hold_s: float = Field(0.75, gt=0.0, le=10.0, description="a face stays hidden this long after it was last seen")
    whole_every_s: float = Field(
        0.4, ge=0.0, le=10.0,
        description="while cameras queue for the detector, each still gets a whole-frame detection this often and "
        "detections between look only around its known faces and where its picture changed; 0 = every detection is whole",
    )
    file_hold_s: float = Field(
        0.4, gt=0.0, le=10.0,
        description="video files: the same, in frames at the file's rate (every frame is detected: it only bridges misses)",
    )
    follow_s: float = Field(
        2.0, ge=0.0, le=30.0,
        description="a face's box also follows its motion (optical flow) this long after it was last seen; 0 = off",
    )
    file_follow_back_s: float = Field(
        2.0, ge=0.0, le=5.0,
        description="video files: a face first found on a frame is also followed back (optical flow) over the "
        "frames before it, this long at most; frames are held back this long before they are written; 0 = off",
    )
    fail_mode: FailMode = FailMode.blur
    zones_file: str = Field(
        "zones.yaml", description="where the privacy zones drawn in the web UI are kept, by camera (relative: to "
        "the config file's folder, or the working directory when set elsewhere)",
    )
    open_timeout_s: float = Field(10.0, gt=0.0)
    read_timeout_s: float = Field(5.0, gt=0.0, description="no frame for this long: the source is reopened")
    reconnect_backoff_s: tuple[float, ...] = Field((1, 1, 1, 5, 10, 60), min_length=1)
    jpeg_quality: int = Field(80, ge=1, le=100)
    detector: LiveDetectorSettings = LiveDetectorSettings()
    detect_wait_s: float = Field(
        0.25, ge=0.0, le=1.0,
        description="a frame waits up to this long after capture for its own (or a later) detection; 0 = never",
    )


class WebRtcSettings(Strict):
    codecs: tuple[str, ...] = Field(("h264", "vp8"), min_length=1, description="in order of preference")
    bitrate_kbps: int = Field(2500, ge=100, le=50_000)
    keyframe_interval_s: float = Field(2.0, gt=0.0, le=60.0)
    max_height: int = Field(0, ge=0, description="scale frames down to this height before encoding; 0 = as captured")
    max_sessions: int = Field(32, ge=1, description="open WebRTC sessions over all cameras")
    connect_timeout_s: float = Field(
        10.0, gt=0, le=120, description="a session not connected this long after its answer is closed"
    )
    host_addresses: tuple[str, ...] = Field(
        (), description="ICE host candidates; empty = every non-loopback interface (aioice's default)"
    )

    @field_validator("codecs")
    @classmethod
    def _known_codecs(cls, codecs: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(codecs) - {"h264", "vp8"})
        if unknown:
            raise ValueError(f"unknown codec(s) {', '.join(unknown)}; use h264 and/or vp8")
        return codecs


class RtspSettings(Strict):
    """The anonymized RTSP feed of every camera, for NVRs: rtsp://HOST:PORT/CAMERA (README, RTSP)."""

    enabled: bool = True
    port: int = Field(8554, ge=0, le=65535, description="0 = any free port (GET /api/cameras lists the URLs)")


class Settings(BaseSettings):
    """Every setting. ``Settings(**file_sections)`` applies the ``STREAMER_*`` environment over them."""

    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_NESTING
    )

    detector: DetectorSettings = DetectorSettings()
    anonymizer: AnonymizerSettings = AnonymizerSettings()
    image: ImageSettings = ImageSettings()
    server: ServerSettings = ServerSettings()
    pipeline: PipelineSettings = PipelineSettings()
    webrtc: WebRtcSettings = WebRtcSettings()
    auth: AuthSettings = AuthSettings()
    rtsp: RtspSettings = RtspSettings()
    cameras: tuple[CameraSettings, ...] = ()

    @model_validator(mode="after")
    def _unique_camera_names(self) -> "Settings":
        names = [camera.name for camera in self.cameras]
        dupes = sorted({name for name in names if names.count(name) > 1})
        if dupes:
            raise ValueError(f"camera names must be unique; repeated: {', '.join(dupes)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file's sections (passed in as keyword arguments).
        return _Environment(settings_cls), init_settings


class _Environment(EnvSettingsSource):
    """``STREAMER_*`` variables; lists and sections in them are YAML (``[0, 0, 0]``, ``[h264]``)."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or exc
            raise ValueError(f"STREAMER_*{field_name.upper()}: {value!r} is not valid YAML ({problem})") from exc


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


def load_settings(path: str | Path | None = None) -> Settings:
    """Read YAML (``path``, else ``$STREAMER_CONFIG``, else the shipped default) and apply env overrides.

    ``STREAMER_DETECTOR__THRESHOLD=0.4`` sets ``detector.threshold``. A relative file path in the
    file (a camera source, the users file, TLS files) is read from the file's folder.
    """
    chosen = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    data = _read_yaml(chosen)
    if chosen != DEFAULT_CONFIG and isinstance(data.setdefault("pipeline", {}), dict):
        # zones drawn in the UI are kept beside the user's config file (the shipped one's: the working directory)
        data["pipeline"].setdefault("zones_file", str(chosen.parent / "zones.yaml"))
    _check_environment_names()
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, f"invalid configuration (file {chosen} and STREAMER_* environment)")) from None
    except SettingsError as exc:
        raise ConfigError(f"invalid environment override {exc.__cause__ or exc}") from None


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """The YAML mapping in the file at ``path``; ``ConfigError`` naming ``what`` and the file if not."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping")
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    """The file's top-level mapping of sections, file paths in it made relative to its folder."""
    data = read_mapping(path, "config file")
    cameras = data.get("cameras")
    if isinstance(cameras, list):
        data["cameras"] = [_from_folder(camera, "source", path.parent) for camera in cameras]
    for section, keys in _FILE_KEYS.items():
        if isinstance(data.get(section), dict):
            for key in keys:
                data[section] = _from_folder(data[section], key, path.parent)
    return data


# Settings that name files: a relative path in a config file is read from the file's folder.
_FILE_KEYS = {"auth": ("users_file", "audit_log"), "server": ("tls_cert", "tls_key"), "pipeline": ("zones_file",)}


def _from_folder(entry: Any, key: str, folder: Path) -> Any:
    """``entry`` with its relative file path ``key`` joined to ``folder`` (URLs, devices, absolute paths kept)."""
    if not isinstance(entry, dict) or not isinstance(entry.get(key), str) or not entry[key]:
        return entry
    value = entry[key]
    if "://" in value or Path(value).is_absolute():
        return entry
    return {**entry, key: str(folder / value)}


def _check_environment_names() -> None:
    """A ``STREAMER_*`` variable must name a section (pydantic-settings would ignore a misspelt one)."""
    sections = set(Settings.model_fields)
    for name in os.environ:
        if name.startswith(ENV_PREFIX) and name != CONFIG_ENV:
            section = name[len(ENV_PREFIX):].lower().split(ENV_NESTING)[0]
            if section not in sections:
                raise ConfigError(
                    f"environment variable {name}: no setting {section!r} (sections: {', '.join(sorted(sections))})"
                )


def with_cameras(settings: Settings, cameras: list[dict[str, Any]]) -> Settings:
    """``settings`` with its cameras replaced (``streamer serve --camera``), checked like the file's."""
    try:
        return Settings.model_validate({**settings.model_dump(), "cameras": cameras})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, "invalid --camera")) from None


def _describe(exc: ValidationError, heading: str) -> str:
    """One line per problem, naming its key; never the value given (a source may hold a password)."""
    lines = [f"{heading}:"]
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        lines.append(f"  {key}: {err['msg']}")
    return "\n".join(lines)
