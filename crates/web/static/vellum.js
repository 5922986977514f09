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
export async function api(method, path, body, extraHeaders) {
  method = method.toUpperCase();
  const headers = { Accept: "application/json", ...extraHeaders };
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
// Kept in this tab's sessionStorage (gone when the tab closes), with the
// version of the draft the form edits; restored when the form is opened
// again; forgotten once the server has saved it from the form, once the
// server holds exactly that text (saved as it was typed), and at sign-out.
// Text kept for another version of a draft than the page holds is never
// put back over it — the draft was changed since, in another tab or by a
// colleague — but shown beside the form, to copy from.

function draftForms() {
  return document.querySelectorAll("form[data-draft-key]");
}

function textFields(form) {
  return [...form.querySelectorAll("textarea, input[name=title]")];
}

function formVersion(form) {
  const input = form.querySelector("input[name=version]");
  return input ? input.value : "";
}

function saveDrafts() {
  for (const form of draftForms()) {
    const key = form.dataset.draftKey;
    for (const field of textFields(form)) {
      sessionStorage.setItem(key + ":" + field.name, field.value);
    }
    sessionStorage.setItem(key + ":version", formVersion(form));
  }
}

function forgetDraft(key) {
  for (const part of ["title", "body", "version"]) {
    sessionStorage.removeItem(key + ":" + part);
  }
}

function offerKept(form, fields, kept) {
  const note = document.createElement("section");
  note.className = "warning";
  note.setAttribute("role", "alert");
  const text = document.createElement("p");
  text.textContent = "This tab kept text typed into an earlier version of this draft. " +
    "The draft was changed since (in another tab, or by a colleague), so the form shows " +
    "the draft as saved now. What this tab kept is below: copy what you need into the form.";
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = "Text this tab kept";
  const pre = document.createElement("pre");
  pre.textContent = fields.map((f, i) => kept[i] ?? "").join("\n\n");
  details.append(summary, pre);
  note.append(text, details);
  form.before(note);
}

function restoreDrafts() {
  for (const form of draftForms()) {
    const key = form.dataset.draftKey;
    const fields = textFields(form);
    const kept = fields.map((f) => sessionStorage.getItem(key + ":" + f.name));
    if (fields.some((f, i) => kept[i] !== null && kept[i] !== f.value)) {
      const keptVersion = sessionStorage.getItem(key + ":version");
      if (keptVersion === null || keptVersion === formVersion(form)) {
        fields.forEach((f, i) => {
          if (kept[i] !== null) f.value = kept[i];
        });
      } else {
        offerKept(form, fields, kept);
      }
    }
    for (const field of fields) field.addEventListener("input", saveDrafts);
  }
  const saved = document.body.dataset.clearDraft;
  if (saved) forgetDraft(saved);
  // Signing out forgets every letter kept in this tab: the next person to
  // sign in here is not shown it.
  for (const form of document.querySelectorAll("form[action='/logout']")) {
    form.addEventListener("submit", () => {
      for (let i = sessionStorage.length - 1; i >= 0; i--) {
        const k = sessionStorage.key(i);
        if (k && k.startsWith("draft:")) sessionStorage.removeItem(k);
      }
    });
  }
}

// --- Letters saved on the server as they are typed ----------------------
// A new letter, or a draft, is saved as a draft a few seconds after typing
// stops (and at least every half minute while it goes on), so that what was
// typed outlives a closed tab or a lost connection (safety file, H012). The
// first save of a new letter creates the draft; the form then continues
// that draft (its address and version), so pressing a button saves the
// same letter, never a second one. Autosave never makes a letter final.

const AUTOSAVE_QUIET_MS = 3000;
const AUTOSAVE_LONGEST_MS = 30000;

function autosave() {
  const form = document.querySelector("form[data-autosave-patient]");
  if (!form) return;
  const patient = form.dataset.autosavePatient;
  const title = form.querySelector("input[name=title]");
  const body = form.querySelector("textarea[name=body]");
  const status = form.querySelector(".autosave-status");
  let quiet = null;
  let longest = null;
  let running = null;
  let stopped = false;

  const say = (text) => { if (status) status.textContent = text; };
  const version = () => {
    let input = form.querySelector("input[name=version]");
    if (!input) {
      input = document.createElement("input");
      input.type = "hidden";
      input.name = "version";
      form.append(input);
    }
    return input;
  };
  // The form continues the draft the server now holds.
  const adopt = (letter) => {
    version().value = String(letter.version);
    if (!form.dataset.autosaveLetter) {
      const before = form.dataset.draftKey;
      const action = "/patients/" + encodeURIComponent(patient) + "/letters/" +
        encodeURIComponent(letter.id) + "/edit";
      form.dataset.autosaveLetter = letter.id;
      form.setAttribute("action", action);
      form.dataset.draftKey = "draft:" + action;
      forgetDraft(before);
      history.replaceState(null, "", action);
    }
  };
  const save = async () => {
    clearTimeout(quiet);
    clearTimeout(longest);
    quiet = longest = null;
    if (stopped || !title.value.trim() || !body.value.trim()) return;
    const content = { title: title.value, body: body.value, status: "draft" };
    const letter = form.dataset.autosaveLetter;
    let res;
    try {
      res = letter
        ? await api("PUT", "/api/patients/" + encodeURIComponent(patient) + "/letters/" +
            encodeURIComponent(letter), content, { "If-Match": 'W/"' + version().value + '"' })
        : await api("POST", "/api/patients/" + encodeURIComponent(patient) + "/letters", content);
    } catch (e) {
      say("Not saved on the server yet: " + e.message);
      return;
    }
    if (res.ok) {
      adopt(await res.json());
      // The server holds exactly what this tab would keep: nothing to keep.
      if (title.value === content.title && body.value === content.body) {
        forgetDraft(form.dataset.draftKey);
      } else {
        saveDrafts();
      }
      say("Draft saved on the server at " + new Date().toLocaleTimeString() + ".");
    } else if (res.status === 409 || res.status === 412) {
      stopped = true;
      say("This draft was changed elsewhere, so it is no longer saved as you type. " +
        "Press Save draft: your text is kept, and you are asked before anything is replaced.");
    } else {
      say("Not saved on the server yet (" + res.status + "); it is tried again as you type.");
    }
  };
  const run = () => {
    if (!running) running = save().finally(() => { running = null; });
    return running;
  };
  const changed = () => {
    if (stopped) return;
    clearTimeout(quiet);
    quiet = setTimeout(run, AUTOSAVE_QUIET_MS);
    if (!longest) longest = setTimeout(run, AUTOSAVE_LONGEST_MS);
  };
  title.addEventListener("input", changed);
  body.addEventListener("input", changed);
  // A button pressed while a save is on its way waits for it, so the form
  // is sent to the draft it created and with its newest version; pressed
  // again meanwhile, the last button pressed is the one sent, once.
  let submitter = null;
  form.addEventListener("submit", (event) => {
    clearTimeout(quiet);
    clearTimeout(longest);
    if (running) {
      event.preventDefault();
      const waiting = submitter !== null;
      submitter = event.submitter;
      if (!waiting) {
        running.finally(() => {
          const pressed = submitter;
          submitter = null;
          form.requestSubmit(pressed);
        });
      }
      return;
    }
    stopped = true;
  });
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
autosave();
instantSearch();
