// Local Telegram web chat: plain JS, no build step. Talks to the user API (/api/...) and
// follows the chat live with server-sent events.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  users: [], userId: null, bot: null, messages: new Map(), source: null, typingTimer: null, ready: null,
};

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function safeUrl(url) {
  return /^(https?|tg):\/\//i.test(url) ? url : "#";
}

function openTag(e, text) {
  switch (e.type) {
    case "bold": return "<b>";
    case "italic": return "<i>";
    case "underline": return "<u>";
    case "strikethrough": return "<s>";
    case "code": return "<code>";
    case "pre": return "<pre>";
    case "spoiler": return '<span class="spoiler" onclick="this.classList.add(\'shown\')">';
    case "blockquote": case "expandable_blockquote": return "<blockquote>";
    case "text_link": return `<a href="${escapeHtml(safeUrl(e.url || ""))}" target="_blank" rel="noopener">`;
    case "url": {
      const url = text.slice(e.offset, e.offset + e.length);
      return `<a href="${escapeHtml(safeUrl(url))}" target="_blank" rel="noopener">`;
    }
    case "bot_command": {
      const cmd = text.slice(e.offset, e.offset + e.length);
      return `<a href="#" class="cmd" data-command="${escapeHtml(cmd)}">`;
    }
    default: return "<span>";
  }
}

const closeTags = {
  bold: "</b>", italic: "</i>", underline: "</u>", strikethrough: "</s>", code: "</code>", pre: "</pre>",
  blockquote: "</blockquote>", expandable_blockquote: "</blockquote>", text_link: "</a>", url: "</a>",
  bot_command: "</a>",
};

// Entity offsets count UTF-16 code units, which is exactly how JS indexes strings.
function renderText(text, entities) {
  if (!entities || !entities.length) return escapeHtml(text);
  const opens = new Map(), closes = new Map();
  for (const e of entities) {
    if (!opens.has(e.offset)) opens.set(e.offset, []);
    opens.get(e.offset).push(e);
    const end = e.offset + e.length;
    if (!closes.has(end)) closes.set(end, []);
    closes.get(end).unshift(e);
  }
  let out = "";
  for (let i = 0; i <= text.length; i++) {
    for (const e of closes.get(i) || []) out += closeTags[e.type] || "</span>";
    if (i === text.length) break;
    const starting = (opens.get(i) || []).sort((a, b) => b.length - a.length);
    for (const e of starting) out += openTag(e, text);
    out += escapeHtml(text[i]);
  }
  return out;
}

async function api(path, options = {}) {
  const sep = path.includes("?") ? "&" : "?";
  const url = state.bot && path.startsWith("/api/chats") ? `${path}${sep}bot=${state.bot.id}` : path;
  const response = await fetch(url, options);
  const body = await response.json();
  if (!body.ok) throw new Error(body.description || "request failed");
  return body.result;
}

function fileUrl(fileId) {
  return `/api/files/${encodeURIComponent(fileId)}`;
}

function formatSize(bytes) {
  if (bytes == null) return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function formatTime(unix) {
  return new Date(unix * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function isMine(message) {
  return !message.from.is_bot;
}

function keyboardHtml(message) {
  const markup = message.reply_markup;
  if (!markup || !markup.inline_keyboard) return "";
  const rows = markup.inline_keyboard.map((row) => {
    const buttons = row.map((b) => {
      if (b.url) {
        return `<a href="${escapeHtml(safeUrl(b.url))}" target="_blank" rel="noopener">${escapeHtml(b.text)} ↗</a>`;
      }
      if (b.callback_data != null) {
        return `<button type="button" data-message="${message.message_id}" data-callback="${escapeHtml(b.callback_data)}">${escapeHtml(b.text)}</button>`;
      }
      return `<button type="button" disabled>${escapeHtml(b.text)}</button>`;
    });
    return `<div class="kb-row">${buttons.join("")}</div>`;
  });
  return `<div class="keyboard">${rows.join("")}</div>`;
}

function metaHtml(message) {
  const edited = message.edit_date ? "edited " : "";
  return `<span class="meta">${edited}${formatTime(message.date)}</span>`;
}

function captionHtml(message) {
  if (!message.caption) return "";
  return `<div class="caption">${renderText(message.caption, message.caption_entities)}${metaHtml(message)}</div>`;
}

function photoHtml(message) {
  const size = message.photo[message.photo.length - 1];
  return `<img class="photo" alt="photo" src="${fileUrl(size.file_id)}" width="${size.width}" height="${size.height}" style="aspect-ratio:${size.width}/${size.height};height:auto">`;
}

function documentHtml(message) {
  const d = message.document;
  const icon = d.thumbnail ? `<img alt="" src="${fileUrl(d.thumbnail.file_id)}">` : "FILE";
  return `<a class="doc" href="${fileUrl(d.file_id)}" download="${escapeHtml(d.file_name || "file")}">
    <span class="doc-icon">${icon}</span>
    <span><div class="doc-name">${escapeHtml(d.file_name || "file")}</div>
    <div class="doc-size">${formatSize(d.file_size)} · ${escapeHtml(d.mime_type || "")}</div></span></a>`;
}

function replyQuote(message) {
  const r = message.reply_to_message;
  if (!r) return "";
  const what = r.text || r.caption || (r.photo ? "Photo" : r.document ? r.document.file_name : "Message");
  return `<div class="reply-quote">${escapeHtml(what)}</div>`;
}

function bubbleHtml(group) {
  const message = group[0];
  const mine = isMine(message);
  let inner;
  let cls = "bubble";
  if (group.length > 1) {
    cls += " media";
    const captioned = group.find((m) => m.caption) || message;
    const items = group.map((m) => (m.photo ? photoHtml(m) : documentHtml(m))).join("");
    inner = `<div class="album">${items}</div>${captionHtml(captioned) || metaHtml(message)}`;
  } else if (message.photo) {
    cls += " media";
    inner = replyQuote(message) + photoHtml(message) + (captionHtml(message) || metaHtml(message));
  } else if (message.sticker) {
    cls += " sticker";
    inner = `<img alt="${escapeHtml(message.sticker.emoji || "sticker")}" src="${fileUrl(message.sticker.file_id)}">`;
  } else if (message.document) {
    inner = replyQuote(message) + documentHtml(message) + captionHtml(message);
    if (!message.caption) inner += metaHtml(message);
  } else {
    inner = replyQuote(message) + renderText(message.text || "", message.entities) + metaHtml(message);
  }
  const keyboard = group.map(keyboardHtml).join("");
  return `<div class="row ${mine ? "mine" : "theirs"}" data-id="${message.message_id}">
    <div class="${cls}">${inner}</div>${keyboard}</div>`;
}

function render() {
  const chat = $("chat");
  const nearBottom = chat.scrollHeight - chat.scrollTop - chat.clientHeight < 120;
  const sorted = [...state.messages.values()].sort((a, b) => a.message_id - b.message_id);
  const groups = [];
  for (const m of sorted) {
    const last = groups[groups.length - 1];
    if (m.media_group_id && last && last[0].media_group_id === m.media_group_id) last.push(m);
    else groups.push([m]);
  }
  $("messages").innerHTML = groups.length
    ? groups.map(bubbleHtml).join("")
    : `<div class="empty">No messages here yet.<br>Say <b>/start</b>, or drop a picture.</div>`;
  for (const img of $("messages").querySelectorAll("img")) {
    img.addEventListener("load", () => { if (nearBottom) chat.scrollTop = chat.scrollHeight; });
  }
  if (nearBottom) chat.scrollTop = chat.scrollHeight;
}

function renderReplyKeyboard(markup) {
  const box = $("reply-keyboard");
  if (!markup || !markup.keyboard) { box.hidden = true; box.innerHTML = ""; return; }
  box.innerHTML = markup.keyboard.map((row) =>
    `<div class="kb-row">${row.map((b) => {
      const text = typeof b === "string" ? b : b.text;
      return `<button type="button" data-text="${escapeHtml(text)}">${escapeHtml(text)}</button>`;
    }).join("")}</div>`).join("");
  box.hidden = false;
}

function renderCommands(commands) {
  state.commands = commands || [];
  $("menu").hidden = !state.commands.length;
  $("commands").innerHTML = state.commands.map((c) =>
    `<button type="button" data-text="/${escapeHtml(c.command)}"><b>/${escapeHtml(c.command)}</b>${escapeHtml(c.description)}</button>`).join("");
}

function showToast(text, alertStyle) {
  if (!text) return;
  if (alertStyle) { window.alert(text); return; }
  const toast = $("toast");
  toast.textContent = text;
  toast.hidden = false;
  clearTimeout(state.toastTimer);
  state.toastTimer = setTimeout(() => { toast.hidden = true; }, 2500);
}

function setStatus(text, typing = false) {
  $("status").textContent = text;
  $("status").classList.toggle("typing", typing);
}

function showAction(action) {
  const words = { typing: "typing…", upload_photo: "sending a photo…", upload_document: "sending a file…" };
  setStatus(words[action] || `${action.replace(/_/g, " ")}…`, true);
  clearTimeout(state.typingTimer);
  state.typingTimer = setTimeout(() => setStatus("bot"), 5000);
}

function applySnapshot(snapshot) {
  state.messages = new Map(snapshot.messages.map((m) => [m.message_id, m]));
  state.bot = snapshot.bot;
  $("bot-name").textContent = snapshot.bot.first_name;
  $("bot-avatar").textContent = snapshot.bot.first_name.slice(0, 1).toUpperCase();
  renderReplyKeyboard(snapshot.reply_keyboard);
  renderCommands(snapshot.commands);
  if (snapshot.action) showAction(snapshot.action); else setStatus("bot");
  render();
}

function follow() {
  if (state.source) state.source.close();
  const botParam = state.bot ? `?bot=${state.bot.id}` : "";
  const source = new EventSource(`/api/chats/${state.userId}/events${botParam}`);
  state.source = source;
  source.addEventListener("snapshot", (e) => applySnapshot(JSON.parse(e.data)));
  source.addEventListener("message", (e) => {
    const m = JSON.parse(e.data);
    state.messages.set(m.message_id, m);
    if (m.from.is_bot) setStatus("bot");
    render();
  });
  source.addEventListener("edit", (e) => {
    const m = JSON.parse(e.data);
    state.messages.set(m.message_id, m);
    render();
  });
  source.addEventListener("delete", (e) => {
    state.messages.delete(JSON.parse(e.data).message_id);
    render();
  });
  source.addEventListener("action", (e) => showAction(JSON.parse(e.data).action));
  source.addEventListener("callback_answer", (e) => {
    const a = JSON.parse(e.data);
    showToast(a.text, a.show_alert);
    for (const b of document.querySelectorAll(".keyboard button:disabled")) b.disabled = false;
  });
  source.addEventListener("reset", () => { source.close(); setTimeout(start, 300); });
  source.onerror = () => setStatus("reconnecting…");
}

async function refreshCommandsLater() {
  // Commands are set by the bot at startup; pick them up once it has had a moment.
  setTimeout(async () => {
    try { renderCommands((await api(`/api/chats/${state.userId}`)).commands); } catch (_) { /* ignore */ }
  }, 1500);
}

async function sendText(text) {
  text = text.trim();
  if (!text) return;
  await state.ready;
  await api(`/api/chats/${state.userId}/messages`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text }),
  });
}

async function sendFiles(files) {
  files = [...files];
  if (!files.length) return;
  const asFile = $("as-file").checked || files.some((f) => !f.type.startsWith("image/") || f.type === "image/svg+xml");
  const caption = $("text").value.trim();
  await state.ready;
  for (let i = 0; i < files.length; i += 10) {
    const form = new FormData();
    form.append("kind", asFile ? "document" : "photo");
    if (i === 0 && caption) form.append("caption", caption);
    for (const f of files.slice(i, i + 10)) form.append("file", f, f.name);
    try {
      await api(`/api/chats/${state.userId}/messages`, { method: "POST", body: form });
    } catch (err) {
      showToast(`Not sent: ${err.message}`);
      return;
    }
  }
  $("text").value = "";
}

async function loadUsers() {
  state.users = await api("/api/users");
  const select = $("user-select");
  select.innerHTML = state.users.map((u) =>
    `<option value="${u.id}">${escapeHtml(u.first_name)}${u.username ? " @" + escapeHtml(u.username) : ""}</option>`).join("");
  select.value = String(state.userId);
}

async function createUser(name) {
  const id = 100000000 + Math.floor(Math.random() * 800000000);
  const language = (navigator.language || "en").slice(0, 2);
  const user = await api("/api/users", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ id, first_name: name, language_code: language }),
  });
  localStorage.setItem("localTelegramUser", JSON.stringify(user));
  return user;
}

async function start() {
  const bots = await api("/api/bots");
  state.bot = bots.find((b) => b.default) || bots[0] || null;
  let saved = null;
  try { saved = JSON.parse(localStorage.getItem("localTelegramUser") || "null"); } catch (_) { saved = null; }
  const users = await api("/api/users");
  let user = saved && users.find((u) => u.id === saved.id);
  if (!user && saved) {
    user = await api("/api/users", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(saved),
    });
  }
  if (!user) user = await createUser("You");
  state.userId = user.id;
  await loadUsers();
  follow();
  refreshCommandsLater();
}

function wire() {
  $("composer").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("text").value;
    $("text").value = "";
    try { await sendText(text); } catch (err) { showToast(`Not sent: ${err.message}`); }
  });
  $("file-input").addEventListener("change", async (e) => {
    await sendFiles(e.target.files);
    e.target.value = "";
  });
  $("messages").addEventListener("click", async (e) => {
    const button = e.target.closest("button[data-callback]");
    if (button) {
      button.disabled = true;
      try {
        await state.ready;
        await api(`/api/chats/${state.userId}/press`, {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ message_id: Number(button.dataset.message), callback_data: button.dataset.callback }),
        });
      } catch (err) { showToast(err.message); button.disabled = false; }
      setTimeout(() => { button.disabled = false; }, 3000);
      return;
    }
    const command = e.target.closest("a.cmd");
    if (command) { e.preventDefault(); await sendText(command.dataset.command); }
  });
  for (const box of [$("reply-keyboard"), $("commands")]) {
    box.addEventListener("click", async (e) => {
      const button = e.target.closest("button[data-text]");
      if (!button) return;
      $("commands").hidden = true;
      await sendText(button.dataset.text);
    });
  }
  $("menu").addEventListener("click", () => { $("commands").hidden = !$("commands").hidden; });
  $("user-select").addEventListener("change", (e) => {
    const user = state.users.find((u) => String(u.id) === e.target.value);
    if (!user) return;
    localStorage.setItem("localTelegramUser", JSON.stringify(user));
    state.userId = user.id;
    follow();
  });
  $("new-user").addEventListener("click", async () => {
    const name = window.prompt("Name of the new user", "Guest");
    if (!name) return;
    const user = await createUser(name.trim().slice(0, 64) || "Guest");
    state.userId = user.id;
    await loadUsers();
    follow();
  });
  const chat = $("chat");
  let depth = 0;
  chat.addEventListener("dragenter", (e) => { e.preventDefault(); depth++; $("drop-hint").hidden = false; });
  chat.addEventListener("dragover", (e) => e.preventDefault());
  chat.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; $("drop-hint").hidden = true; } });
  chat.addEventListener("drop", async (e) => {
    e.preventDefault();
    depth = 0;
    $("drop-hint").hidden = true;
    await sendFiles(e.dataTransfer.files);
  });
}

// Until start() knows who the user is there is no chat to post to: whatever the user sends
// before then waits for it instead of being lost.
state.ready = start();
state.ready.catch((err) => setStatus(`error: ${err.message}`));
wire();
