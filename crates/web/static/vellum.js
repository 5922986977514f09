// Vellum's one API client and its small enhancements. Every core flow works
// without this file; it only makes some faster. No inline script anywhere:
// the Content-Security-Policy forbids it.

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** The CSRF token from its cookie (named __Host-vellum-csrf over HTTPS). */
export function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "__Host-vellum-csrf" || name === "vellum-csrf") {
      return rest.join("=");
    }
  }
  return null;
}

/**
 * Calls the JSON API. A state-changing request carries the CSRF token from
 * the cookie in X-CSRF-Token; without the cookie it is not sent at all.
 * An expired session sends the user to sign in and back here.
 */
export async function api(method, path, body) {
  method = method.toUpperCase();
  const headers = { Accept: "application/json" };
  if (UNSAFE.has(method)) {
    const token = csrfToken();
    if (!token) {
      throw new Error("The CSRF cookie is missing: reload the page and try again.");
    }
    headers["X-CSRF-Token"] = token;
  }
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
  }
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (res.status === 401) {
    saveDrafts();
    const here = location.pathname + location.search;
    location.assign("/login?next=" + encodeURIComponent(here));
    throw new Error("Your session has ended: sign in again.");
  }
  return res;
}

// --- Letter drafts survive an expired session --------------------------
// Kept in this tab's sessionStorage (gone when the tab closes), restored
// when the form is opened again, forgotten once the server has saved it.

function draftFields() {
  return document.querySelectorAll("[data-draft-key] textarea, [data-draft-key] input[name=title]");
}

function saveDrafts() {
  for (const field of draftFields()) {
    const key = field.closest("[data-draft-key]").dataset.draftKey + ":" + field.name;
    sessionStorage.setItem(key, field.value);
  }
}

function restoreDrafts() {
  for (const field of draftFields()) {
    const key = field.closest("[data-draft-key]").dataset.draftKey + ":" + field.name;
    const kept = sessionStorage.getItem(key);
    if (kept !== null && field.value === "") {
      field.value = kept;
    }
    field.addEventListener("input", saveDrafts);
  }
  const saved = document.body.dataset.clearDraft;
  if (saved) {
    for (const name of ["title", "body"]) {
      sessionStorage.removeItem(saved + ":" + name);
    }
  }
}

// --- Instant patient search --------------------------------------------

function instantSearch() {
  const box = document.querySelector("input#q[data-instant]");
  const results = document.querySelector("#results");
  if (!box || !results) return;
  let timer;
  box.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const q = box.value.trim();
      if (q.length < 2) return;
      const res = await api("GET", "/api/patients?q=" + encodeURIComponent(q));
      if (!res.ok) return;
      const page = await res.json();
      const list = document.createElement("ul");
      list.className = "instant";
      for (const p of page.items) {
        const li = document.createElement("li");
        const a = document.createElement("a");
        a.href = "/patients/" + encodeURIComponent(p.id);
        a.textContent = p.display_name + (p.birth_date ? " — born " + p.birth_date : "");
        const dot = document.createElement("span");
        dot.className = "avatar g" + Number(p.avatar_gradient);
        dot.setAttribute("aria-hidden", "true");
        li.append(dot, " ", a);
        list.append(li);
      }
      if (!page.items.length) {
        const li = document.createElement("li");
        li.textContent = "No patients found.";
        list.append(li);
      }
      results.replaceChildren(list);
    }, 200);
  });
}

restoreDrafts();
instantSearch();
