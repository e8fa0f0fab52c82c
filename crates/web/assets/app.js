// Imagegram's web client (PRODUCT.md §4). One module, no framework: the DOM is
// built with `h()` (text is always set as text, never parsed as HTML), pages are
// real URLs handled with the History API, and every request goes to the
// documented API with the session's bearer token.
import { decode as decodeBlurhash } from "/assets/vendor/blurhash-2.0.5.js";

const TOKEN_KEY = "imagegram.token";
/** Posts per feed request: about one phone screen and a half. */
const FEED_PAGE = 5;

const NOTICES_KEY = "imagegram.notifications";

const state = {
  token: localStorage.getItem(TOKEN_KEY),
  me: null,
  // Kept across reloads with the last event id, so a reload neither loses
  // nor repeats a notification: {lastId, unread, items: [{text, href, at}]}.
  notices: JSON.parse(localStorage.getItem(NOTICES_KEY) || "null") || { lastId: null, unread: 0, items: [] },
  events: null, // AbortController of the live notification stream
};

function saveNotices() {
  state.notices.items = state.notices.items.slice(0, 50);
  localStorage.setItem(NOTICES_KEY, JSON.stringify(state.notices));
}

// ---------------------------------------------------------------- helpers

/** An element with attributes (`on…` are listeners) and children. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A labelled control: the label names it for people and screen readers. */
function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  // The hint is a description, outside the label: the name stays exactly `label`.
  const hintEl = hint ? h("span", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", {}, h("label", { for: id }, label), hintEl, control);
}

/** An error or status line that screen readers announce. */
function messageLine() {
  return h("p", { class: "error", role: "alert" });
}

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `The server answered ${status}.`);
    this.status = status;
    this.problem = problem;
  }
}

/** Calls the API; a problem+json answer becomes an ApiError with its `detail`. */
async function api(method, path, { json, headers = {}, raw = false } = {}) {
  const init = { method, headers: { ...headers } };
  if (state.token) init.headers.Authorization = `Bearer ${state.token}`;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, { detail: "The network is unavailable. Nothing was lost: try again." });
  }
  if (!res.ok) {
    let problem = null;
    try { problem = await res.json(); } catch { /* not JSON */ }
    if (res.status === 401 && state.token && !path.startsWith("/v1/sessions")) signedOut();
    throw new ApiError(res.status, problem);
  }
  if (raw) return res;
  if (res.status === 204) return null;
  return res.json();
}

function when(iso) {
  const d = new Date(iso);
  return h("time", { datetime: iso }, d.toLocaleString());
}

function userLink(user) {
  return h("a", { href: `/u/${encodeURIComponent(user.username)}` }, user.username);
}

function toast(text, href) {
  const box = h("div", { class: "toast" }, text, href ? [" ", h("a", { href }, "Open")] : null);
  document.getElementById("toasts").append(box);
  setTimeout(() => box.remove(), 8000);
}

function go(path) {
  history.pushState(null, "", path);
  route();
}

// ---------------------------------------------------------------- session

async function loadMe() {
  if (!state.token) { state.me = null; return; }
  try {
    state.me = await api("GET", "/v1/me");
  } catch (e) {
    if (e.status === 401) signedOut();
  }
}

function signedIn(session) {
  state.token = session.token;
  localStorage.setItem(TOKEN_KEY, session.token);
}

function signedOut() {
  state.token = null;
  state.me = null;
  localStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(NOTICES_KEY);
  state.notices = { lastId: null, unread: 0, items: [] };
  stopEvents();
  renderNav();
}

async function logOut() {
  try { await api("DELETE", "/v1/sessions/current"); } catch { /* gone already */ }
  signedOut();
  go("/");
}

// ---------------------------------------------------------------- live notifications

function stopEvents() {
  if (state.events) state.events.abort();
  state.events = null;
}

/** Follows /v1/events. EventSource cannot send the bearer token, so the
 *  stream is read with fetch and its (small) SSE framing parsed here; a
 *  dropped stream is reopened with Last-Event-ID, so nothing is missed. */
async function startEvents() {
  stopEvents();
  if (!state.token) return;
  const control = new AbortController();
  state.events = control;
  let wait = 1000;
  while (!control.signal.aborted && state.token) {
    try {
      const headers = { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" };
      if (state.notices.lastId) headers["Last-Event-ID"] = state.notices.lastId;
      const res = await fetch("/v1/events", { headers, signal: control.signal });
      if (res.status === 401) { signedOut(); return; }
      if (!res.ok) throw new Error(`events: ${res.status}`);
      wait = 1000;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = { id: null, type: "message", data: "" };
          for (const line of block.split("\n")) {
            const [key, ...rest] = line.split(":");
            const value = rest.join(":").replace(/^ /, "");
            if (key === "id") event.id = value;
            else if (key === "event") event.type = value;
            else if (key === "data") event.data += value;
          }
          if (event.id) state.notices.lastId = event.id;
          if (event.data) notify(event.type, JSON.parse(event.data));
          saveNotices();
        }
      }
    } catch (e) {
      if (control.signal.aborted) return;
    }
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(wait * 2, 30000);
  }
}

const NOTICES = {
  "post.ready": (d) => ["Your post is ready.", `/p/${d.post_id}`],
  "post.failed": (d) => ["Your post could not be processed.", `/p/${d.post_id}`],
  "comment.created": (d) => [`${d.author.username} commented on your post: “${d.body}”`, `/p/${d.post_id}`],
  "post.removed": () => ["A moderator removed one of your posts.", null],
  "export.ready": () => ["Your data export is ready to download.", "/settings"],
};

function notify(type, data) {
  const make = NOTICES[type];
  if (!make) return;
  const [text, href] = make(data);
  state.notices.items.unshift({ text, href, at: new Date().toISOString() });
  state.notices.unread += 1;
  toast(text, href);
  renderNav();
  window.dispatchEvent(new CustomEvent("imagegram:event", { detail: { type, data } }));
}

// ---------------------------------------------------------------- navigation bar

function renderNav() {
  const nav = document.getElementById("nav");
  nav.replaceChildren(h("a", { class: "brand", href: "/" }, "Imagegram"));
  if (!state.me) {
    nav.append(
      h("a", { class: "button secondary", href: "/login" }, "Log in"),
      h("a", { class: "button", href: "/signup" }, "Sign up"),
    );
    return;
  }
  const unread = state.notices.unread;
  const label = unread ? `Notifications, ${unread} unread` : "Notifications";
  nav.append(
    h("button", { type: "button", onclick: () => go("/new") }, "New post"),
    h("a", { href: "/notifications", "aria-label": label }, "Notifications",
      unread ? h("span", { class: "badge", "aria-hidden": "true" }, unread) : null),
    h("a", { href: `/u/${encodeURIComponent(state.me.username)}` }, "My posts"),
    ...(state.me.role !== "user" ? [h("a", { href: "/moderation" }, "Moderation")] : []),
    h("a", { href: "/settings" }, "Settings"),
    h("button", { type: "button", class: "secondary", onclick: logOut }, "Log out"),
  );
}

// ---------------------------------------------------------------- posts

/** The image box: sized from the API's width and height before anything
 *  loads (no layout shift), the blurhash underneath until the JPEG arrives. */
function imageFrame(post) {
  const frame = h("div", { class: "frame" });
  const img = post.image;
  if (!img) {
    frame.style.aspectRatio = "1 / 1";
    const text = post.status === "failed"
      ? `This image could not be processed${post.failure ? `: ${post.failure}` : "."}`
      : "Processing the image…";
    frame.append(h("p", { class: "state muted" }, text));
    return frame;
  }
  frame.style.aspectRatio = `${img.width} / ${img.height}`;
  if (img.blurhash) {
    try {
      const pixels = decodeBlurhash(img.blurhash, 32, 32);
      const canvas = h("canvas", { width: 32, height: 32, "aria-hidden": "true" });
      const ctx = canvas.getContext("2d");
      const data = ctx.createImageData(32, 32);
      data.data.set(pixels);
      ctx.putImageData(data, 0, 0);
      frame.append(canvas);
    } catch { /* a bad hash only loses the placeholder */ }
  }
  const image = h("img", {
    src: img.url, alt: post.alt_text || "", width: img.width, height: img.height,
    loading: "lazy", decoding: "async",
  });
  const shown = () => image.classList.add("loaded");
  image.addEventListener("load", shown);
  if (image.complete) shown();
  frame.append(image);
  return frame;
}

function commentItem(c, onDelete) {
  const mine = state.me && c.author.id === state.me.id;
  return h("li", {},
    h("span", { class: "who" }, userLink(c.author)),
    h("span", {}, c.body),
    onDelete ? [" ", h("span", { class: "muted" }, when(c.created_at))] : null,
    onDelete && mine ? [" ", h("button", { type: "button", class: "link", onclick: () => onDelete(c) }, "Delete")] : null,
    onDelete && state.me && !mine ? [" ", h("button", { type: "button", class: "link", onclick: (e) => reportForm(e.target, "comment", c.id) }, "Report")] : null,
  );
}

/** A post in a list: an `article`, its image, caption, count and newest two comments. */
function postCard(post) {
  const count = post.comment_count === 1 ? "1 comment" : `${post.comment_count} comments`;
  return h("article", { class: "post", "aria-labelledby": `by-${post.id}` },
    h("header", {},
      h("span", { id: `by-${post.id}` }, "Post by ", userLink(post.author)),
      h("span", { class: "muted" }, when(post.created_at))),
    imageFrame(post),
    h("div", { class: "body" },
      post.caption ? h("p", { class: "caption" }, post.caption) : null,
      h("a", { href: `/p/${post.id}` }, count),
      post.last_comments.length ? h("ul", { class: "comments", "aria-label": "Newest comments" },
        post.last_comments.map((c) => commentItem(c, null))) : null),
  );
}

/** Appends pages of `path` (a listing of posts) to `list` as the reader nears
 *  the end: one screen ahead, never the whole feed. */
function endlessList(path, list, status, cleanup) {
  let cursor = null;
  let done = false;
  let loading = false;
  const sentinel = h("div", { "aria-hidden": "true" });
  const near = () => sentinel.getBoundingClientRect().top < window.innerHeight * 2;
  async function more() {
    if (loading || done) return;
    loading = true;
    try {
      const sep = path.includes("?") ? "&" : "?";
      const page = await api("GET", `${path}${sep}limit=${FEED_PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      for (const post of page.items) list.append(postCard(post));
      cursor = page.next_cursor;
      done = !cursor;
      if (done) status.textContent = list.children.length ? "That is everything." : "No posts yet.";
    } catch (e) {
      status.textContent = e.message;
      done = true;
    } finally {
      loading = false;
    }
    if (!done && near()) more();
  }
  const watcher = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) more();
  }, { rootMargin: "0px 0px 100% 0px" });
  watcher.observe(sentinel);
  cleanup.push(() => watcher.disconnect());
  more();
  return sentinel;
}

async function feedPage(main, cleanup) {
  const list = h("div", { class: "posts" });
  const status = h("p", { class: "muted", role: "status" });
  main.append(h("h1", {}, "Feed"), list, status, endlessList("/v1/posts", list, status, cleanup));
}

async function userPage(main, cleanup, username) {
  main.append(h("h1", {}, username));
  if (state.me && state.me.username !== username) {
    const msg = messageLine();
    main.append(h("div", { class: "actions" },
      h("button", { type: "button", class: "danger", onclick: () => block(username, msg) }, "Block")), msg);
  }
  const list = h("div", { class: "posts" });
  const status = h("p", { class: "muted", role: "status" });
  main.append(list, status, endlessList(`/v1/users/${encodeURIComponent(username)}/posts`, list, status, cleanup));
}

async function block(username, msg) {
  if (!confirm(`Block ${username}? You will no longer see their posts or comments, and they cannot comment on yours.`)) return;
  try {
    await api("PUT", `/v1/me/blocks/${encodeURIComponent(username)}`);
    await loadMe();
    toast(`You blocked ${username}.`);
    go("/");
  } catch (e) {
    msg.textContent = e.message;
  }
}

/** The report form, opened under the button that asked for it. */
function reportForm(button, type, id) {
  const holder = button.closest("li, .actions") || button.parentElement;
  if (holder.nextElementSibling && holder.nextElementSibling.matches("form.report")) return;
  const reason = h("select", {},
    ["spam", "harassment", "nudity", "violence", "illegal", "other"].map((r) => h("option", { value: r }, r)));
  const note = h("textarea", { maxlength: 1000 });
  const msg = messageLine();
  const form = h("form", {
    class: "stack report card",
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        await api("POST", "/v1/reports", { json: { target: { type, id }, reason: reason.value, note: note.value } });
        form.replaceWith(h("p", { role: "status" }, "Thank you. A moderator will look at it."));
      } catch (err) {
        msg.textContent = err.message;
      }
    },
  },
  field("Reason", reason), field("Note", note, "Optional: what a moderator should know."), msg,
  h("div", { class: "actions" }, h("button", { type: "submit" }, "Send report"),
    h("button", { type: "button", class: "secondary", onclick: () => form.remove() }, "Cancel")));
  holder.after(form);
  reason.focus();
}

async function postPage(main, cleanup, id) {
  let post;
  let etag = null;
  try {
    const res = await api("GET", `/v1/posts/${id}`, { raw: true });
    etag = res.headers.get("ETag");
    post = await res.json();
  } catch (e) {
    main.append(h("h1", {}, "Post"), h("p", { class: "error", role: "alert" }, e.message));
    return;
  }
  const mine = state.me && post.author.id === state.me.id;
  const msg = messageLine();
  const actions = h("div", { class: "actions" });
  const card = postCard(post);
  const countLink = card.querySelector(".body a[href^='/p/']"); // it points here
  countLink.replaceWith(h("p", {}, countLink.textContent));
  main.append(h("h1", {}, "Post"), card, actions, msg);

  if (post.status === "processing") {
    // Shown again when its worker is done (the event) or, failing that, soon.
    const again = () => route();
    const listener = (e) => { if (e.detail.data.post_id === id) again(); };
    window.addEventListener("imagegram:event", listener);
    const timer = setTimeout(again, 3000);
    cleanup.push(() => { window.removeEventListener("imagegram:event", listener); clearTimeout(timer); });
  }

  if (mine) {
    actions.append(
      h("button", { type: "button", class: "secondary", onclick: () => editForm() }, "Edit"),
      h("button", { type: "button", class: "danger", onclick: deletePost }, "Delete"),
    );
  } else if (state.me) {
    actions.append(
      h("button", { type: "button", class: "secondary", onclick: (e) => reportForm(e.target, "post", id) }, "Report"),
      h("button", { type: "button", class: "danger", onclick: () => block(post.author.username, msg) }, "Block"),
    );
  }

  function editForm() {
    if (main.querySelector("form.edit")) return;
    const caption = h("textarea", { maxlength: 2200 }, post.caption);
    const alt = h("textarea", { maxlength: 1500 }, post.alt_text || "");
    const form = h("form", {
      class: "stack edit card",
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          await api("PATCH", `/v1/posts/${id}`, {
            json: { caption: caption.value, alt_text: alt.value },
            headers: etag ? { "If-Match": etag } : {},
          });
          route();
        } catch (err) {
          msg.textContent = err.status === 412
            ? "The post changed since you opened it. Reload to see it, then edit again."
            : err.message;
        }
      },
    },
    field("Caption", caption), field("Alt text", alt, "Describes the image for people who cannot see it."),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Save"),
      h("button", { type: "button", class: "secondary", onclick: () => form.remove() }, "Cancel")));
    actions.after(form);
    caption.focus();
  }

  async function deletePost() {
    if (!confirm("Delete this post and its comments? This cannot be undone.")) return;
    try {
      await api("DELETE", `/v1/posts/${id}`);
      toast("Your post was deleted.");
      go("/");
    } catch (e) {
      msg.textContent = e.message;
    }
  }

  // All comments, newest first, a page at a time.
  const list = h("ul", { class: "comments", "aria-label": "Comments" });
  const commentMsg = messageLine();
  let cursor = null;
  const moreButton = h("button", { type: "button", class: "secondary", onclick: () => loadComments() }, "Load more comments");
  async function removeComment(c) {
    if (!confirm("Delete your comment?")) return;
    try {
      await api("DELETE", `/v1/posts/${id}/comments/${c.id}`);
      route();
    } catch (e) {
      commentMsg.textContent = e.message;
    }
  }
  async function loadComments() {
    try {
      const page = await api("GET", `/v1/posts/${id}/comments?limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      for (const c of page.items) list.append(commentItem(c, removeComment));
      cursor = page.next_cursor;
      moreButton.hidden = !cursor;
    } catch (e) {
      commentMsg.textContent = e.message;
    }
  }
  main.append(h("h2", {}, "Comments"));
  if (state.me && post.status === "ready") {
    const body = h("textarea", { maxlength: 1000, required: true });
    const button = h("button", { type: "submit" }, "Comment");
    main.append(h("form", {
      class: "stack",
      onsubmit: async (e) => {
        e.preventDefault();
        button.disabled = true;
        try {
          await api("POST", `/v1/posts/${id}/comments`, { json: { body: body.value } });
          route();
        } catch (err) {
          commentMsg.textContent = err.message; // the text stays in the box
        } finally {
          button.disabled = false;
        }
      },
    }, field("Write a comment", body), h("div", { class: "actions" }, button)));
  }
  main.append(commentMsg, list, moreButton);
  moreButton.hidden = true;
  await loadComments();
}

// ---------------------------------------------------------------- new post (tus)

const EXPIRY = [["Never", ""], ["In 1 hour", "3600"], ["In 1 day", "86400"], ["In 1 week", "604800"]];

async function newPostPage(main, cleanup) {
  if (!state.me) { go("/login"); return; }
  const file = h("input", { type: "file", accept: "image/png,image/jpeg,image/bmp", required: true });
  const preview = h("img", { class: "preview", alt: "Preview of the chosen image", hidden: true });
  const caption = h("textarea", { maxlength: 2200 });
  const alt = h("textarea", { maxlength: 1500 });
  const filter = h("select", {}, [["None", "none"], ["Grayscale", "grayscale"], ["Dither", "dither"]]
    .map(([t, v]) => h("option", { value: v }, t)));
  const levels = h("input", { type: "number", min: 2, max: 16, value: 2, disabled: true });
  const expiry = h("select", {}, EXPIRY.map(([t, v]) => h("option", { value: v }, t)));
  const progress = h("progress", { max: 1, value: 0, "aria-label": "Upload progress", hidden: true });
  const progressText = h("p", { class: "muted", role: "status" });
  const msg = messageLine();
  const submit = h("button", { type: "submit" }, "Post");
  let previewUrl = null;
  cleanup.push(() => previewUrl && URL.revokeObjectURL(previewUrl));

  file.addEventListener("change", () => {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    const chosen = file.files[0];
    preview.hidden = !chosen;
    if (chosen) {
      previewUrl = URL.createObjectURL(chosen);
      preview.src = previewUrl;
    }
  });
  filter.addEventListener("change", () => { levels.disabled = filter.value !== "dither"; });

  const form = h("form", { class: "stack", onsubmit: (e) => { e.preventDefault(); send(); } },
    field("Image", file, "PNG, JPEG or BMP, up to 100 MiB."), preview,
    field("Caption", caption),
    field("Alt text", alt, "Describes the image for people who cannot see it."),
    field("Filter", filter), field("Dither levels", levels, "2 to 16 levels per colour, for the dither filter."),
    field("Expires", expiry),
    progress, progressText, msg, h("div", { class: "actions" }, submit));
  main.append(h("h1", {}, "New post"), form);

  // One key per post being made: a retried creation cannot post twice.
  let idempotencyKey = null;
  let uploadId = null;

  function send() {
    msg.textContent = "";
    const chosen = file.files[0];
    if (!chosen) { msg.textContent = "Choose an image first."; file.focus(); return; }
    submit.disabled = true;
    idempotencyKey = idempotencyKey || crypto.randomUUID();
    if (uploadId) { createPost(); return; }
    upload(chosen);
  }

  function upload(chosen) {
    progress.hidden = false;
    progress.max = chosen.size;
    let lastProgress = Date.now();
    const task = new window.tus.Upload(chosen, {
      endpoint: "/v1/uploads",
      headers: { Authorization: `Bearer ${state.token}` },
      metadata: { filename: chosen.name, filetype: chosen.type },
      // Retries on their own while the connection comes and goes; past these,
      // the `online` event (or the watchdog below) starts it again.
      retryDelays: [0, 1000, 3000, 5000, 10000],
      removeFingerprintOnSuccess: true,
      onProgress(sent, total) {
        lastProgress = Date.now();
        progress.max = total;
        progress.value = sent;
        progressText.textContent = `Uploaded ${(sent / 1048576).toFixed(1)} of ${(total / 1048576).toFixed(1)} MB`;
      },
      onError(err) {
        const status = err.originalResponse ? err.originalResponse.getStatus() : 0;
        if (status >= 400 && status < 500 && status !== 409 && status !== 423) {
          let detail = "";
          try { detail = JSON.parse(err.originalResponse.getBody()).detail; } catch { /* not JSON */ }
          stop();
          msg.textContent = detail || `The upload was refused (${status}).`;
          submit.disabled = false;
          return;
        }
        progressText.textContent = "Waiting for the network… the upload goes on from where it stopped.";
      },
      onSuccess() {
        stop();
        uploadId = task.url.split("/").pop();
        createPost();
      },
    });
    // A connection that dies silently sends no error: no progress for 20 s
    // means start again, from the server's offset.
    const watchdog = setInterval(() => {
      if (Date.now() - lastProgress > 20000) {
        lastProgress = Date.now();
        task.abort().then(() => task.start());
      }
    }, 5000);
    const online = () => { lastProgress = Date.now(); task.abort().then(() => task.start()); };
    window.addEventListener("online", online);
    function stop() {
      clearInterval(watchdog);
      window.removeEventListener("online", online);
    }
    cleanup.push(() => { stop(); task.abort(); });
    task.findPreviousUploads().then((previous) => {
      if (previous.length) task.resumeFromPreviousUpload(previous[0]);
      task.start();
    });
  }

  async function createPost() {
    progressText.textContent = "Creating the post…";
    const body = { upload_id: uploadId, caption: caption.value, alt_text: alt.value, filter: filter.value };
    if (filter.value === "dither") body.dither_levels = Number(levels.value);
    if (expiry.value) body.expires_in = Number(expiry.value);
    for (let attempt = 0; ; attempt++) {
      try {
        const post = await api("POST", "/v1/posts", { json: body, headers: { "Idempotency-Key": idempotencyKey } });
        go(`/p/${post.id}`);
        return;
      } catch (e) {
        if (e.status === 0 && attempt < 5) {
          progressText.textContent = "Waiting for the network to create the post…";
          await new Promise((r) => setTimeout(r, 2000 * (attempt + 1)));
          continue;
        }
        msg.textContent = e.message; // everything typed stays in the form
        submit.disabled = false;
        if (e.status === 422 && e.problem && /upload/.test(JSON.stringify(e.problem.errors || ""))) uploadId = null;
        return;
      }
    }
  }
}

// ---------------------------------------------------------------- accounts

function authPage(main, mode) {
  const signup = mode === "signup";
  const username = h("input", { type: "text", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: false });
  const password = h("input", { type: "password", autocomplete: signup ? "new-password" : "current-password", required: true });
  const msg = messageLine();
  const submit = h("button", { type: "submit" }, signup ? "Sign up" : "Log in");
  main.append(
    h("h1", {}, signup ? "Sign up" : "Log in"),
    h("form", {
      class: "stack",
      onsubmit: async (e) => {
        e.preventDefault();
        submit.disabled = true;
        try {
          const session = await api("POST", signup ? "/v1/users" : "/v1/sessions", {
            json: { username: username.value, password: password.value },
          });
          signedIn(session);
          await loadMe();
          renderNav();
          startEvents();
          go("/");
        } catch (err) {
          msg.textContent = err.message;
        } finally {
          submit.disabled = false;
        }
      },
    },
    field("Username", username, signup ? "3 to 32 letters, digits or underscores." : null),
    field("Password", password, signup ? "At least 8 characters." : null),
    msg, h("div", { class: "actions" }, submit)),
    signup ? h("p", {}, "Have an account? ", h("a", { href: "/login" }, "Log in instead"))
      : h("p", {}, "New here? ", h("a", { href: "/signup" }, "Create an account")),
  );
  username.focus();
}

async function settingsPage(main) {
  if (!state.me) { go("/login"); return; }
  main.append(h("h1", {}, "Settings"));

  // Password
  const current = h("input", { type: "password", autocomplete: "current-password", required: true });
  const next = h("input", { type: "password", autocomplete: "new-password", required: true });
  const pwMsg = messageLine();
  main.append(h("h2", {}, "Password"), h("form", {
    class: "stack",
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        await api("PUT", "/v1/me/password", { json: { current_password: current.value, new_password: next.value } });
        current.value = next.value = "";
        pwMsg.textContent = "";
        toast("Password changed. Your other sessions were logged out.");
        route();
      } catch (err) {
        pwMsg.textContent = err.message;
      }
    },
  }, field("Current password", current), field("New password", next), pwMsg,
  h("div", { class: "actions" }, h("button", { type: "submit" }, "Change password"))));

  // Sessions
  const sessions = h("tbody");
  const sMsg = messageLine();
  main.append(h("h2", {}, "Sessions"), h("table", {},
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Signed in"), h("th", { scope: "col" }, "Last used"), h("th", { scope: "col" }, h("span", { class: "muted" }, "Action")))), sessions), sMsg);
  try {
    const list = await api("GET", "/v1/me/sessions");
    for (const s of list.items) {
      sessions.append(h("tr", {}, h("td", {}, when(s.created_at)), h("td", {}, when(s.last_used_at)),
        h("td", {}, s.current ? "This device" : h("button", {
          type: "button", class: "secondary", "aria-label": `Revoke the session signed in ${new Date(s.created_at).toLocaleString()}`,
          onclick: async () => {
            try { await api("DELETE", `/v1/me/sessions/${s.id}`); route(); } catch (err) { sMsg.textContent = err.message; }
          },
        }, "Revoke"))));
    }
  } catch (err) { sMsg.textContent = err.message; }

  // Blocks
  const blocked = h("ul", { class: "comments", "aria-label": "Blocked users" });
  main.append(h("h2", {}, "Blocked users"), blocked);
  try {
    const list = await api("GET", "/v1/me/blocks");
    if (!list.items.length) blocked.append(h("li", { class: "muted" }, "You block no one."));
    for (const u of list.items) {
      blocked.append(h("li", {}, u.username, " ", h("button", {
        type: "button", class: "link", "aria-label": `Unblock ${u.username}`,
        onclick: async () => { await api("DELETE", `/v1/me/blocks/${encodeURIComponent(u.username)}`); await loadMe(); route(); },
      }, "Unblock")));
    }
  } catch (err) { blocked.append(h("li", { class: "error" }, err.message)); }

  // Export
  const exportStatus = h("p", { role: "status" });
  const exportMsg = messageLine();
  main.append(h("h2", {}, "Your data"),
    h("p", {}, "A zip of your account, posts, comments and original images, kept for 7 days."),
    h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onclick: requestExport }, "Request export")),
    exportStatus, exportMsg);
  async function requestExport() {
    try {
      let ex = await api("POST", "/v1/me/exports");
      exportStatus.textContent = "Building your export…";
      while (ex.status !== "ready") {
        await new Promise((r) => setTimeout(r, 1500));
        ex = await api("GET", `/v1/me/exports/${ex.id}`);
        if (ex.status === "failed") throw new Error("The export failed. Try again later.");
      }
      exportStatus.replaceChildren("Your export is ready. ", h("button", {
        type: "button",
        onclick: async () => {
          const res = await api("GET", ex.url, { raw: true });
          const href = URL.createObjectURL(await res.blob());
          const a = h("a", { href, download: `imagegram-${state.me.username}.zip` });
          document.body.append(a);
          a.click();
          a.remove();
          setTimeout(() => URL.revokeObjectURL(href), 10000);
        },
      }, "Download export"));
    } catch (err) { exportMsg.textContent = err.message; }
  }

  // Deletion
  const password = h("input", { type: "password", autocomplete: "current-password", required: true });
  const delMsg = messageLine();
  main.append(h("h2", {}, "Delete account"),
    h("p", {}, "Your posts, comments and images are removed for good, and your username becomes free."),
    h("form", {
      class: "stack",
      onsubmit: async (e) => {
        e.preventDefault();
        if (!confirm("Delete your account and everything you posted? This cannot be undone.")) return;
        try {
          await api("DELETE", "/v1/me", { json: { password: password.value } });
          signedOut();
          toast("Your account was deleted.");
          go("/");
        } catch (err) { delMsg.textContent = err.message; }
      },
    }, field("Password", password, "To confirm it is you."), delMsg,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "danger" }, "Delete account"))));
}

function notificationsPage(main) {
  state.notices.unread = 0;
  saveNotices();
  renderNav();
  main.append(h("h1", {}, "Notifications"));
  if (!state.notices.items.length) {
    main.append(h("p", { class: "muted" }, "Nothing yet. New comments on your posts, and your posts being ready, show here as they happen."));
    return;
  }
  main.append(h("ul", { class: "comments" }, state.notices.items.map((n) =>
    h("li", {}, n.href ? h("a", { href: n.href }, n.text) : n.text, " ", h("span", { class: "muted" }, when(n.at))))));
}

// ---------------------------------------------------------------- moderation

async function moderationPage(main) {
  if (!state.me || state.me.role === "user") {
    main.append(h("h1", {}, "Moderation"), h("p", {}, "Only moderators see the report queue."));
    return;
  }
  main.append(h("h1", {}, "Moderation"), h("h2", {}, "Open reports"));
  const queue = h("div", {});
  const msg = messageLine();
  main.append(msg, queue);
  try {
    const page = await api("GET", "/v1/moderation/reports?status=open&limit=50");
    if (!page.items.length) queue.append(h("p", { class: "muted" }, "No open reports."));
    for (const g of page.items) queue.append(reportGroup(g, msg));
  } catch (err) { msg.textContent = err.message; }

  main.append(h("h2", {}, "Audit log"));
  const audit = h("tbody");
  main.append(h("table", {}, h("thead", {}, h("tr", {},
    ["When", "Moderator", "Action", "Target"].map((t) => h("th", { scope: "col" }, t)))), audit));
  try {
    const log = await api("GET", "/v1/moderation/audit?limit=20");
    for (const e of log.items) {
      audit.append(h("tr", {}, h("td", {}, when(e.created_at)), h("td", {}, e.moderator), h("td", {}, e.action),
        h("td", {}, e.target.username || `${e.target.type} ${e.target.id || ""}`)));
    }
  } catch (err) { msg.textContent = err.message; }
}

function reportGroup(g, msg) {
  const s = g.snapshot;
  const isPost = g.target.type === "post";
  const card = h("section", { class: "card", "aria-label": `Reports on a ${g.target.type} by ${s.author.username}` },
    h("p", {}, h("strong", {}, `${g.report_count} report${g.report_count === 1 ? "" : "s"}`), ` (${g.reasons.join(", ")}) on a ${g.target.type} by `, userLink(s.author)),
    s.image_url ? h("img", { src: s.image_url, alt: "The reported image", width: 128, height: 128 }) : null,
    s.text ? h("p", { class: "caption" }, s.text) : null,
    isPost ? h("div", {}, h("input", { type: "checkbox", id: `ban-${g.id}` }), " ",
      h("label", { for: `ban-${g.id}`, class: "inline" }, "Ban this image")) : null,
    h("div", { class: "actions" },
      ["dismiss", "remove", "suspend"].map((action) => h("button", {
        type: "button", class: action === "dismiss" ? "secondary" : "danger",
        onclick: async () => {
          const banBox = card.querySelector(`#ban-${g.id}`);
          try {
            await api("POST", `/v1/moderation/reports/${g.id}/resolve`, {
              json: { action, ban_image: Boolean(banBox && banBox.checked && action !== "dismiss") },
            });
            card.replaceWith(h("p", { role: "status" }, `Done: ${action}.`));
          } catch (err) { msg.textContent = err.message; }
        },
      }, action[0].toUpperCase() + action.slice(1)))),
  );
  return card;
}

// ---------------------------------------------------------------- router

const ROUTES = [
  [/^\/$/, feedPage],
  [/^\/p\/([^/]+)$/, postPage],
  [/^\/u\/([^/]+)$/, userPage],
  [/^\/new$/, newPostPage],
  [/^\/login$/, (main) => authPage(main, "login")],
  [/^\/signup$/, (main) => authPage(main, "signup")],
  [/^\/settings$/, settingsPage],
  [/^\/notifications$/, notificationsPage],
  [/^\/moderation$/, moderationPage],
];

let cleanups = [];

async function route() {
  for (const c of cleanups) c();
  cleanups = [];
  const main = document.getElementById("main");
  main.replaceChildren();
  const path = location.pathname;
  for (const [pattern, page] of ROUTES) {
    const m = path.match(pattern);
    if (m) {
      const args = m.slice(1).map(decodeURIComponent);
      await page(main, cleanups, ...args);
      const heading = main.querySelector("h1");
      document.title = heading ? `${heading.textContent} · Imagegram` : "Imagegram";
      return;
    }
  }
  main.append(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "/" }, "Back to the feed")));
}

// Links inside the app change the page without reloading it.
document.addEventListener("click", (e) => {
  const a = e.target.closest("a[href]");
  if (!a || a.target || a.hasAttribute("download") || e.ctrlKey || e.metaKey || e.shiftKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/v1/") || url.hash) return;
  e.preventDefault();
  if (url.pathname !== location.pathname) go(url.pathname);
  document.getElementById("main").focus();
});
window.addEventListener("popstate", route);

(async () => {
  await loadMe();
  renderNav();
  if (state.me) startEvents();
  await route();
})();
