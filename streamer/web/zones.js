// The privacy-zone editor (admins): the camera's newest frame with its zones drawn over it.
// Click on empty picture to start a zone and add corners, click its first corner (or "Close") to
// finish it; drag a corner to move it, double-click a corner to remove it (a zone keeps three);
// click inside a zone to select it, then "Delete zone" or pick its mode. "Save" replaces the camera's zones (PUT api/cameras/NAME/zones): every output
// hides them from the next frame on.
import { authorized } from "./session.js";

const dialog = document.getElementById("zones");
const picture = dialog.querySelector("img");
const canvas = dialog.querySelector("canvas");
const modeBox = dialog.querySelector("select[name=mode]");
const status = dialog.querySelector(".zones-status");
const GRAB_PX = 10;

let camera = null;
let zones = [];       // [{mode, points: [[x, y], ...]}], points as fractions of the picture
let drawing = null;   // the zone being drawn, not closed yet
let selected = null;
let dragging = null;  // {zone, index}

function toPixels([x, y]) { return [x * canvas.width, y * canvas.height]; }

function eventPoint(event) {
  const box = canvas.getBoundingClientRect();
  const x = Math.min(Math.max((event.clientX - box.left) / box.width, 0), 1);
  const y = Math.min(Math.max((event.clientY - box.top) / box.height, 0), 1);
  return [x, y];
}

function near(a, b) {
  const [ax, ay] = toPixels(a);
  const [bx, by] = toPixels(b);
  return Math.hypot(ax - bx, ay - by) <= GRAB_PX * (canvas.width / canvas.getBoundingClientRect().width);
}

function inside([x, y], points) {
  let hit = false;
  for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
    const [xi, yi] = points[i];
    const [xj, yj] = points[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) hit = !hit;
  }
  return hit;
}

function draw() {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  for (const zone of [...zones, ...(drawing ? [drawing] : [])]) {
    ctx.beginPath();
    zone.points.forEach((p, i) => (i ? ctx.lineTo(...toPixels(p)) : ctx.moveTo(...toPixels(p))));
    if (zone !== drawing) ctx.closePath();
    ctx.fillStyle = zone.mode === "blur" ? "rgba(80, 160, 255, 0.45)" : "rgba(0, 0, 0, 0.6)";
    if (zone !== drawing) ctx.fill();
    ctx.lineWidth = Math.max(2, canvas.width / 400);
    ctx.strokeStyle = zone === selected ? "#fc3" : "#2a7";
    ctx.stroke();
    for (const p of zone.points) {
      ctx.fillStyle = zone === selected ? "#fc3" : "#2a7";
      ctx.fillRect(toPixels(p)[0] - 4, toPixels(p)[1] - 4, 8, 8);
    }
  }
  status.textContent = drawing
    ? `Drawing: ${drawing.points.length} corner(s); click the first corner or "Close" to finish.`
    : `${zones.length} zone(s).`;
  modeBox.disabled = !selected;
  if (selected) modeBox.value = selected.mode;
}

function closeDrawing() {
  if (drawing && drawing.points.length >= 3) {
    zones.push(drawing);
    selected = drawing;
  }
  drawing = null;
  draw();
}

canvas.addEventListener("pointerdown", (event) => {
  const point = eventPoint(event);
  for (const zone of zones) {
    const index = zone.points.findIndex((p) => near(p, point));
    if (index >= 0) {
      dragging = { zone, index };
      selected = zone;
      canvas.setPointerCapture(event.pointerId);
      draw();
      return;
    }
  }
  if (drawing) {
    if (drawing.points.length >= 3 && near(drawing.points[0], point)) closeDrawing();
    else { drawing.points.push(point); draw(); }
    return;
  }
  const hit = [...zones].reverse().find((zone) => inside(point, zone.points));
  if (hit) { selected = hit; draw(); return; }
  selected = null;
  drawing = { mode: modeBox.value || "black", points: [point] };
  draw();
});

canvas.addEventListener("pointermove", (event) => {
  if (!dragging) return;
  dragging.zone.points[dragging.index] = eventPoint(event);
  draw();
});

canvas.addEventListener("pointerup", () => { dragging = null; });

canvas.addEventListener("dblclick", (event) => {
  const point = eventPoint(event);
  for (const zone of zones) {
    const index = zone.points.findIndex((p) => near(p, point));
    if (index >= 0 && zone.points.length > 3) {
      zone.points.splice(index, 1);
      draw();
      return;
    }
  }
});

modeBox.addEventListener("change", () => { if (selected) { selected.mode = modeBox.value; draw(); } });

dialog.querySelector(".zones-close").addEventListener("click", closeDrawing);
dialog.querySelector(".zones-delete").addEventListener("click", () => {
  zones = zones.filter((zone) => zone !== selected);
  selected = null;
  draw();
});
dialog.querySelector(".zones-cancel").addEventListener("click", () => dialog.close());
dialog.querySelector(".zones-save").addEventListener("click", async () => {
  closeDrawing();
  const reply = await authorized(`api/cameras/${encodeURIComponent(camera)}/zones`, {
    method: "PUT",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ zones }),
  });
  if (reply.ok) { dialog.close(); return; }
  const problem = await reply.json().catch(() => ({ detail: reply.statusText }));
  status.textContent = `Not saved (${reply.status}): ${problem.detail}`;
});

export async function editZones(name) {
  camera = name;
  drawing = selected = dragging = null;
  const reply = await authorized(`api/cameras/${encodeURIComponent(name)}/zones`);
  zones = (await reply.json()).zones;
  dialog.querySelector(".zones-title").textContent = `Privacy zones: ${name}`;
  picture.src = `api/cameras/${encodeURIComponent(name)}/frame.jpeg?t=${Date.now()}`;
  await picture.decode().catch(() => {});
  canvas.width = picture.naturalWidth || 640;
  canvas.height = picture.naturalHeight || 360;
  dialog.showModal();
  draw();
}
