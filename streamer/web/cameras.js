// Camera grid: live WebRTC video per camera (WHEP), MJPEG when WebRTC fails, stats from the API.
import { authorized, whoAmI } from "./session.js";
import { editZones } from "./zones.js";

const grid = document.getElementById("grid");
const tiles = new Map();
const forceMjpeg = new URLSearchParams(location.search).get("transport") === "mjpeg";
const WEBRTC_TIMEOUT_MS = 10000;

function waitForIce(pc, timeoutMs) {
  // aiortc has no trickle ICE: the offer must carry every candidate.
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", done); resolve(); } };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);
  });
}

async function startWebRtc(tile) {
  const pc = new RTCPeerConnection();
  tile.pc = pc;
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.ontrack = (event) => { tile.video.srcObject = event.streams[0] || new MediaStream([event.track]); };
  await pc.setLocalDescription(await pc.createOffer());
  await waitForIce(pc, 3000);
  const reply = await authorized(`api/cameras/${encodeURIComponent(tile.name)}/whep`, {
    method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp,
  });
  if (reply.status !== 201) throw new Error(`WHEP answered ${reply.status}`);
  tile.session = reply.headers.get("Location");
  await pc.setRemoteDescription({ type: "answer", sdp: await reply.text() });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no video within 10 s")), WEBRTC_TIMEOUT_MS);
    tile.video.addEventListener("playing", () => { clearTimeout(timer); resolve(); }, { once: true });
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed") { clearTimeout(timer); reject(new Error("connection failed")); }
    });
  });
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "failed" || pc.connectionState === "disconnected") showMjpeg(tile, "WebRTC lost");
  });
}

function stopWebRtc(tile) {
  if (tile.session) fetch(tile.session, { method: "DELETE", keepalive: true }).catch(() => {});
  if (tile.pc) tile.pc.close();
  tile.pc = tile.session = null;
  tile.video.srcObject = null;
}

function showMjpeg(tile, why) {
  stopWebRtc(tile);
  tile.video.hidden = true;
  tile.img.hidden = false;
  tile.img.src = `api/cameras/${encodeURIComponent(tile.name)}/stream.mjpeg?height=720`;
  tile.transport.textContent = why ? `MJPEG (${why})` : "MJPEG";
  tile.transport.dataset.transport = "mjpeg";
  tile.button.textContent = "WebRTC";
}

async function showWebRtc(tile) {
  tile.img.removeAttribute("src");
  tile.img.hidden = true;
  tile.video.hidden = false;
  tile.transport.textContent = "WebRTC (connecting)";
  tile.transport.dataset.transport = "webrtc-connecting";
  tile.button.textContent = "MJPEG";
  try {
    await startWebRtc(tile);
    tile.transport.textContent = "WebRTC";
    tile.transport.dataset.transport = "webrtc";
  } catch (error) {
    showMjpeg(tile, error.message);
  }
}

function addTile(camera) {
  const node = document.getElementById("tile").content.firstElementChild.cloneNode(true);
  const tile = {
    name: camera.name, node, pc: null, session: null,
    video: node.querySelector("video"), img: node.querySelector("img"),
    transport: node.querySelector(".transport"), button: node.querySelector(".switch"),
    state: node.querySelector(".state"), stats: node.querySelector(".stats"),
  };
  node.dataset.camera = camera.name;
  node.querySelector(".name").textContent = camera.name;
  tile.img.alt = `camera ${camera.name}, anonymized`;
  tile.button.addEventListener("click", () => {
    if (tile.transport.dataset.transport === "mjpeg") showWebRtc(tile); else showMjpeg(tile, "chosen");
  });
  const zonesButton = node.querySelector(".edit-zones");
  zonesButton.addEventListener("click", () => editZones(camera.name));
  whoAmI.then((me) => { zonesButton.hidden = !me || me.role !== "admin"; });
  grid.append(node);
  tiles.set(camera.name, tile);
  if (forceMjpeg || !("RTCPeerConnection" in window)) showMjpeg(tile, forceMjpeg ? "chosen" : "no WebRTC");
  else showWebRtc(tile);
}

function fmt(value, unit = "") {
  return value === null || value === undefined ? "–" : `${value}${unit}`;
}

function render(camera) {
  const tile = tiles.get(camera.name);
  tile.state.textContent = camera.state;
  tile.state.dataset.state = camera.state;
  const dropped = Object.values(camera.dropped).reduce((a, b) => a + b, 0);
  const rows = [
    ["fps", `${camera.fps.capture} in / ${camera.fps.output} out / ${camera.fps.detect} detect`],
    ["faces", camera.faces],
    ["latency", camera.latency_ms ? `${camera.latency_ms.p50} ms (p95 ${camera.latency_ms.p95})` : "–"],
    ["dropped", dropped],
    ["hidden whole", camera.fail_closed_frames],
    ["viewers", `${camera.viewers} MJPEG, ${fmt(camera.webrtc_sessions)} WebRTC`],
    ["detector", camera.detector],
  ];
  if (camera.last_error) rows.push(["last error", camera.last_error]);
  tile.stats.replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v; dd.dataset.key = k;
    return [dt, dd];
  }));
}

async function refresh() {
  const error = document.getElementById("error");
  try {
    const reply = await authorized("api/cameras");
    if (!reply.ok) throw new Error(`the server answered ${reply.status}`);
    const cameras = await reply.json();
    document.getElementById("empty").hidden = cameras.length > 0;
    for (const camera of cameras) {
      if (!tiles.has(camera.name)) addTile(camera);
      render(camera);
    }
    error.hidden = true;
  } catch (e) {
    error.textContent = `Cannot reach the server: ${e.message}`;
    error.hidden = false;
  }
}

window.addEventListener("pagehide", () => tiles.forEach(stopWebRtc));
refresh();
setInterval(refresh, 1000);
