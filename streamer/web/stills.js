// Still images: send each picked or dropped file to /v1/anonymize and show both side by side.
import { authorized } from "./session.js";

const form = document.getElementById("options");
const drop = document.getElementById("drop");
const input = document.getElementById("files");
const results = document.getElementById("results");
const errorBox = document.getElementById("error");

// A busy server answers 503 with Retry-After (seconds): wait that long and send again, this
// many times in all, before showing the refusal.
const MAX_TRIES = 5;

async function send(file, params, caption) {
  for (let attempt = 1; ; attempt++) {
    const body = new FormData();
    body.append("file", file, file.name);
    const reply = await authorized(`v1/anonymize?${params}`, { method: "POST", body });
    const wait = Number(reply.headers.get("Retry-After"));
    if (reply.status !== 503 || !wait || attempt === MAX_TRIES) return reply;
    caption.textContent = `Server busy: trying again in ${wait} s`;
    await new Promise((resolve) => setTimeout(resolve, wait * 1000));
  }
}

async function anonymize(file) {
  const node = document.getElementById("result").content.firstElementChild.cloneNode(true);
  node.querySelector(".title").textContent = file.name;
  node.querySelector(".original").src = URL.createObjectURL(file);
  results.prepend(node);
  // A field left empty is not sent: the server's configured value applies.
  const params = new URLSearchParams([...new FormData(form)].filter(([, value]) => value !== ""));
  const reply = await send(file, params, node.querySelector(".caption"));
  if (!reply.ok) {
    const problem = await reply.json().catch(() => ({ detail: reply.statusText }));
    node.querySelector(".caption").textContent = `Refused (${reply.status}): ${problem.detail}`;
    node.classList.add("failed");
    return;
  }
  const url = URL.createObjectURL(await reply.blob());
  const faces = reply.headers.get("X-Faces-Detected");
  node.querySelector(".anonymized").src = url;
  node.querySelector(".caption").textContent = `Anonymized: ${faces} face${faces === "1" ? "" : "s"} hidden`;
  node.dataset.faces = faces;
  const link = node.querySelector(".download");
  link.href = url;
  link.download = file.name.replace(/(\.[^.]+)?$/, "-anonymized$1");
}

async function handle(files) {
  errorBox.hidden = true;
  for (const file of files) {
    try {
      await anonymize(file);
    } catch (e) {
      errorBox.textContent = `${file.name}: ${e.message}`;
      errorBox.hidden = false;
    }
  }
}

input.addEventListener("change", () => handle([...input.files]));
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") input.click(); });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  handle([...e.dataTransfer.files]);
});
