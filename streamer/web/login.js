// The login form: POST api/login, then back to the page that sent the browser here.
const form = document.getElementById("login");
const errorBox = document.getElementById("error");

function next() {
  // Only a page of this UI: a bare file name with its query, never another site.
  const target = new URLSearchParams(location.search).get("next") || "index.html";
  return /^[\w.-]+\.html(\?[^#]*)?$/.test(target) ? target : "index.html";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const fields = new FormData(form);
  const reply = await fetch("api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user: fields.get("user"), password: fields.get("password") }),
  });
  if (reply.ok) {
    location.assign(next());
    return;
  }
  const problem = await reply.json().catch(() => ({ detail: reply.statusText }));
  errorBox.textContent = problem.detail;
  errorBox.hidden = false;
});
