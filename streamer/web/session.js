// Logging in and out, shared by the pages: an answer of 401 sends the browser to the login page,
// which brings it back here afterwards; the header's "Log out" shows when the server has users.

export function toLogin() {
  const back = location.pathname.split("/").pop() + location.search;
  location.assign(`login.html?next=${encodeURIComponent(back || "index.html")}`);
}

// fetch() that goes to the login page instead of answering 401.
export async function authorized(url, options) {
  const reply = await fetch(url, options);
  if (reply.status === 401) {
    toLogin();
    throw new Error("not logged in");
  }
  return reply;
}

// Who is logged in ({user, role, cameras, ...}), or null.
export const whoAmI = fetch("api/me").then((reply) => (reply.ok ? reply.json() : null)).catch(() => null);

async function showUser() {
  const me = await whoAmI;
  if (!me) return;
  const link = document.getElementById("logout");
  if (!me.users || !link) return;
  link.textContent = `Log out ${me.user}`;
  link.hidden = false;
  link.addEventListener("click", async (event) => {
    event.preventDefault();
    await fetch("api/logout", { method: "POST" });
    toLogin();
  });
}

showUser();
