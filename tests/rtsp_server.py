#!/usr/bin/python3
"""A small RTSP server that plays H.264 MP4 files as if they were live cameras (tests and demos).

Run it with the SYSTEM python, which has GStreamer's bindings (python3-gi and
gir1.2-gst-rtsp-server-1.0 from Debian); the project's venv does not:

    /usr/bin/python3 tests/rtsp_server.py --port 8564 --mount /cam=streamer/assets/demo.mp4 [--mount /b=other.mp4]

Each mount is served on 127.0.0.1 only, at real-time pace, by one shared media: every client of a
mount sees the same stream, like a camera's, and a client's PLAY does not seek it (a camera is not
seekable). The clip loops when it ends, seamlessly: no EOS or BYE, and RTP timestamps keep rising
at the frame rate, so a client sees one endless stream (see Looper; --no-loop turns it off). When
the last client of a mount leaves, its media is torn down, and the next client starts the clip
afresh. It prints ``READY rtsp://127.0.0.1:PORT`` on stdout once listening (with --port 0, PORT is
the one the system chose), logs to stderr, and exits with status 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

LAUNCH = (
    "( filesrc location={location} ! qtdemux ! h264parse config-interval=-1 "
    "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)


def log(message: str) -> None:
    print(f"rtsp_server: {message}", file=sys.stderr, flush=True)


class Looper:
    """Makes one media's clip loop, seamlessly, with a pad probe on h264parse's source pad.

    When the clip ends, its EOS is kept from the payloader (EOS would make the RTP session say BYE
    and end the stream) and a flushing seek sends qtdemux back to the start. A demuxer that has sent
    EOS takes no more data until a flush, hence the flushing seek; its flush events are kept from the
    payloader too, so the RTP side never notices, and the SEGMENT event that follows gets its base
    set to the running time where the last frame ended. Timestamps, and so RTP timestamps, keep
    rising at the frame rate across the loop, and a client sees one endless stream.
    """

    def __init__(self, media: GstRtspServer.RTSPMedia, name: str) -> None:
        self.name = name
        self.loops = 0
        self.segment: Gst.Segment | None = None
        self.end = 0  # running time where the last buffer ended
        self.last_pts = -1
        self.seek_seqnum: int | None = None  # our loop seek, while it is under way
        self.rebase = False  # the next SEGMENT event starts a new loop
        self.forwarding = False
        pay = media.get_element().get_by_name("pay0")
        self.pad = pay.get_static_pad("sink").get_peer()  # h264parse's source pad
        self.pad.add_probe(Gst.PadProbeType.BUFFER | Gst.PadProbeType.EVENT_DOWNSTREAM
                           | Gst.PadProbeType.EVENT_FLUSH, self._probe)

    def _probe(self, pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        if info.type & Gst.PadProbeType.BUFFER:
            buffer = info.get_buffer()
            if self.segment is not None and buffer.pts != Gst.CLOCK_TIME_NONE:
                duration = buffer.duration
                if duration == Gst.CLOCK_TIME_NONE:
                    duration = buffer.pts - self.last_pts if 0 <= self.last_pts < buffer.pts else 0
                self.last_pts = buffer.pts
                running = self.segment.to_running_time(Gst.Format.TIME, buffer.pts + duration)
                if running != Gst.CLOCK_TIME_NONE:
                    self.end = max(self.end, running)
            return Gst.PadProbeReturn.OK
        event = info.get_event()
        if self.forwarding:
            return Gst.PadProbeReturn.OK
        kind = event.type
        if kind == Gst.EventType.EOS:
            if self.seek_seqnum is None:
                self.seek_seqnum = Gst.util_seqnum_next()
                self.loops += 1
                GLib.idle_add(self._restart, self.seek_seqnum)
            return Gst.PadProbeReturn.DROP
        if kind in (Gst.EventType.FLUSH_START, Gst.EventType.FLUSH_STOP):
            if self.seek_seqnum is not None and event.get_seqnum() == self.seek_seqnum:
                if kind == Gst.EventType.FLUSH_STOP:
                    self.rebase = True
                return Gst.PadProbeReturn.DROP
            if kind == Gst.EventType.FLUSH_STOP:  # someone else's flush: running time restarts
                self.end = 0
                self.rebase = False
                self.seek_seqnum = None
        elif kind == Gst.EventType.SEGMENT:
            segment = event.parse_segment()
            self.last_pts = -1
            self.segment = segment
            if self.rebase:
                self.rebase = False
                self.seek_seqnum = None
                segment.base = self.end
                new = Gst.Event.new_segment(segment)
                new.set_seqnum(event.get_seqnum())
                self.forwarding = True
                try:
                    pad.push_event(new)
                finally:
                    self.forwarding = False
                return Gst.PadProbeReturn.DROP
        return Gst.PadProbeReturn.OK

    def _restart(self, seqnum: int) -> bool:
        log(f"{self.name}: end of clip, looping ({self.loops})")
        seek = Gst.Event.new_seek(
            1.0, Gst.Format.TIME, Gst.SeekFlags.FLUSH, Gst.SeekType.SET, 0, Gst.SeekType.NONE, -1
        )
        seek.set_seqnum(seqnum)
        if not self.pad.send_event(seek):  # travels upstream to qtdemux
            log(f"{self.name}: could not seek back to the start; the stream ends here")
        return GLib.SOURCE_REMOVE


def make_factory(name: str, path: Path, loop: bool) -> GstRtspServer.RTSPMediaFactory:
    factory = GstRtspServer.RTSPMediaFactory()
    location = str(path).replace("\\", "\\\\").replace('"', '\\"')
    factory.set_launch(LAUNCH.format(location=f'"{location}"'))
    factory.set_shared(True)
    loopers: list[Looper] = []

    def on_configure(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        pay = media.get_element().get_by_name("pay0")
        pay.get_static_pad("sink").add_probe(Gst.PadProbeType.QUERY_UPSTREAM, answer_not_seekable)
        if loop:
            looper = Looper(media, name)
            loopers.append(looper)
            media.connect("unprepared", lambda _media: loopers.remove(looper))
        log(f"{name}: new media")

    factory.connect("media-configure", on_configure)
    return factory


def answer_not_seekable(_pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
    """Answers the pipeline's SEEKING query with "not seekable", as a camera would.

    Otherwise GstRtspServer seeks the shared media to the Range of each PLAY request (FFmpeg asks for
    npt=0.000-), which restarts the clip, and makes timestamps jump back, for every other client.
    A query answered HANDLED keeps its initial values, seekable=FALSE (the query that PyGObject
    hands over is not writable, so set_seeking cannot be used).
    """
    if info.get_query().type == Gst.QueryType.SEEKING:
        return Gst.PadProbeReturn.HANDLED
    return Gst.PadProbeReturn.OK


def parse_mount(text: str) -> tuple[str, Path]:
    name, sep, file = text.partition("=")
    if not sep or not name.startswith("/") or not file:
        raise argparse.ArgumentTypeError(f"expected /name=FILE.mp4, got {text!r}")
    path = Path(file).resolve()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {path}")
    return name, path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8564, help="TCP port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--mount", type=parse_mount, action="append", required=True,
                        metavar="/NAME=FILE.mp4", help="serve FILE.mp4 at rtsp://127.0.0.1:PORT/NAME")
    parser.add_argument("--no-loop", action="store_true", help="end the stream when the clip ends")
    args = parser.parse_args(argv)

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for name, path in args.mount:
        mounts.add_factory(name, make_factory(name, path, loop=not args.no_loop))

    source_id = server.attach(None)
    if not source_id:
        log(f"cannot listen on 127.0.0.1:{args.port}")
        return 1
    port = server.get_bound_port()

    main_loop = GLib.MainLoop()

    def stop(signum: int) -> bool:
        log(f"signal {signum}, stopping")
        main_loop.quit()
        return GLib.SOURCE_REMOVE

    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, stop, signum)

    # Drop idle client sessions now and then, as a real camera's server would.
    pool = server.get_session_pool()
    GLib.timeout_add_seconds(2, lambda: pool.cleanup() >= 0)

    print(f"READY rtsp://127.0.0.1:{port}", flush=True)
    for name, path in args.mount:
        log(f"serving {path} at rtsp://127.0.0.1:{port}{name}")
    main_loop.run()
    return 0


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave without running finalizers: tearing down GStreamer while its streaming threads still
    # run crashed now and then (SIGSEGV), and this process has nothing to save.
    os._exit(status)
