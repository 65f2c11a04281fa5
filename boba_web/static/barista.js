"use strict";
/*
 * The barista console (CONTRACT §6). Staff-only data comes from GET /barista/orders (the
 * active orders with phone and SMS state, sent with the session cookie); the event stream
 * only says "order N is now S", so the page refetches that order from
 * GET /api/orders/{n}. SMS state changes have no event: an order is fetched again a few
 * seconds after each of its events, and the whole list every 30 s.
 */
(function () {
  const list = document.getElementById("orders");
  const empty = document.getElementById("empty");
  const connection = document.getElementById("connection");
  const soundButton = document.getElementById("sound");
  const notice = document.getElementById("notice");
  const orders = new Map(); // order_number -> order JSON (staff shape)
  const highlighted = new Map(); // order_number -> time it arrived
  const HIGHLIGHT_MS = 60000;
  let audio = null;

  // --- sound: browsers allow audio only after a user gesture -------------------------
  function enableSound() {
    if (audio) return;
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    audio = new Context();
    soundButton.textContent = "\u266A Chime on";
    soundButton.setAttribute("aria-pressed", "true");
  }
  function chime() {
    if (!audio) return;
    const now = audio.currentTime;
    [660, 880].forEach((freq, i) => {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.type = "sine";
      osc.frequency.value = freq;
      const start = now + i * 0.18;
      gain.gain.setValueAtTime(0.0001, start);
      gain.gain.exponentialRampToValueAtTime(0.12, start + 0.03);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.6);
      osc.connect(gain).connect(audio.destination);
      osc.start(start);
      osc.stop(start + 0.65);
    });
    document.body.dataset.chimes = String(Number(document.body.dataset.chimes || 0) + 1);
  }
  document.addEventListener("pointerdown", enableSound, { once: true });
  document.addEventListener("keydown", enableSound, { once: true });
  soundButton.addEventListener("click", enableSound);

  // --- rendering ------------------------------------------------------------------------
  function money(value) {
    return "$" + Number(value).toFixed(2);
  }
  function age(createdAt) {
    const seconds = Math.max(0, Math.round((Date.now() - Date.parse(createdAt)) / 1000));
    if (seconds < 60) return seconds + " s";
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min";
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }
  function smsText(state) {
    if (state === null || state === undefined) return "\u2014";
    if (state.startsWith("failed")) return "\u2716 " + state;
    return { queued: "\u2026 queued", sent: "\u2714 sent", unknown: "? unknown" }[state] || state;
  }
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function drinkLine(drink) {
    const li = el("li", "drink");
    li.append(el("strong", "flavor", drink.flavor));
    const extras = [...drink.toppings, ...drink.addons];
    li.append(el("span", "extras", extras.length ? " + " + extras.join(", ") : " (no toppings)"));
    li.append(el("span", "options", " \u00B7 " + drink.sweetness + " sweet \u00B7 " + drink.ice));
    li.append(el("span", "price", " " + money(drink.price)));
    return li;
  }
  function button(label, action, number, hint) {
    const b = el("button", "action " + action, label);
    b.type = "button";
    b.dataset.action = action;
    b.dataset.order = number;
    b.title = hint;
    return b;
  }
  function card(order) {
    const number = order.order_number;
    const article = el("article", "order " + order.status);
    article.dataset.order = number;
    article.dataset.status = order.status;
    article.setAttribute("aria-label", "Order " + number + ", " + order.status);
    if (highlighted.has(number)) article.classList.add("new");

    const head = el("header", "order-head");
    head.append(el("span", "order-number", "#" + number));
    if (order.name) head.append(el("span", "cup-name", order.name));
    head.append(el("span", "badge " + order.status, order.status === "ready" ? "\u2714 READY" : "\u25D4 PREPARING"));
    if (highlighted.has(number)) head.append(el("span", "badge new-tag", "NEW"));
    head.append(el("span", "age", age(order.created_at)));
    head.lastChild.dataset.created = order.created_at;
    article.append(head);

    const drinks = el("ul", "drinks");
    order.items.forEach((d) => drinks.append(drinkLine(d)));
    article.append(drinks);

    const facts = el("dl", "facts");
    const phone = el("a", "phone", order.phone);
    phone.href = "tel:" + order.phone;
    const transcript = el("a", "call-link", "transcript");
    transcript.href = "/calls/order/" + encodeURIComponent(number);
    const pairs = [
      ["Total", el("span", "total", money(order.total))],
      ["Phone", phone],
      ["SMS received", el("span", "sms", smsText(order.sms && order.sms.received))],
      ["SMS ready", el("span", "sms", smsText(order.sms && order.sms.ready))],
      ["Call", transcript],
    ];
    for (const [term, value] of pairs) {
      facts.append(el("dt", "", term));
      const dd = el("dd");
      dd.append(value);
      facts.append(dd);
    }
    article.append(facts);

    const actions = el("div", "actions");
    if (order.status === "received") {
      actions.append(button("Done", "done", number, "Mark ready and text the customer"));
      actions.append(button("Cancel", "cancel", number, "Cancel this order (no SMS)"));
    } else if (order.status === "ready") {
      actions.append(button("Picked up", "picked-up", number, "The customer has the drink"));
    }
    article.append(actions);
    return article;
  }
  function render() {
    const active = [...orders.values()]
      .filter((o) => o.status === "received" || o.status === "ready")
      .sort((a, b) => a.created_at.localeCompare(b.created_at) || a.order_number.localeCompare(b.order_number));
    const focused = document.activeElement;
    const keep = focused && focused.dataset && focused.dataset.action
      ? [focused.dataset.order, focused.dataset.action] : null;
    list.replaceChildren(...active.map(card));
    empty.hidden = active.length > 0;
    if (keep) {
      // keyboard users keep their place: the same button, else the card's next one
      const again =
        list.querySelector(`button[data-order="${keep[0]}"][data-action="${keep[1]}"]`) ||
        list.querySelector(`button[data-order="${keep[0]}"]`);
      if (again) again.focus();
    }
    document.getElementById("count").textContent = active.length;
  }
  function tickAges() {
    for (const node of list.querySelectorAll(".age[data-created]")) node.textContent = age(node.dataset.created);
    const now = Date.now();
    let expired = false;
    for (const [number, since] of highlighted) {
      if (now - since > HIGHLIGHT_MS) { highlighted.delete(number); expired = true; }
    }
    if (expired) render();
  }

  // --- data -----------------------------------------------------------------------------
  function sessionLost(err) {
    if (err && err.status === 401) { window.location.reload(); return true; }
    return false;
  }
  async function reload() {
    try {
      const fresh = await Boba.getJSON("/barista/orders");
      orders.clear();
      for (const order of fresh) orders.set(order.order_number, order);
      render();
    } catch (err) {
      if (!sessionLost(err)) throw err;
    }
  }
  async function refresh(number) {
    try {
      const order = await Boba.getJSON("/api/orders/" + encodeURIComponent(number));
      orders.set(order.order_number, order);
    } catch (err) {
      if (sessionLost(err)) return;
      if (err.status !== 404) { console.warn(err.message); return; }
      orders.delete(number);
    }
    render();
  }
  function say(text, kind) {
    notice.textContent = text;
    notice.dataset.kind = kind || "info";
  }

  list.addEventListener("click", async (event) => {
    const b = event.target.closest("button[data-action]");
    if (!b) return;
    const { order, action } = b.dataset;
    if (action === "cancel" && !window.confirm("Cancel order #" + order + "?")) return;
    b.disabled = true;
    highlighted.delete(order);
    try {
      const response = await fetch(`/api/orders/${encodeURIComponent(order)}/${action}`, {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      const body = await response.json().catch(() => ({}));
      if (response.status === 401) { window.location.reload(); return; }
      if (!response.ok) {
        say(body.error || "That did not work (" + response.status + ").", "error");
        await refresh(order);
        return;
      }
      orders.set(body.order_number, body);
      say("Order #" + order + ": " + body.status.replace("_", " ") + ".", "info");
      render();
      const next = list.querySelector(`button[data-order="${order}"]`);
      if (next) next.focus(); // e.g. Done → Picked up, one Enter away

      setTimeout(() => refresh(order), 6000); // the SMS is handed over within 5 s
    } catch (err) {
      say("Network problem: " + err.message, "error");
      b.disabled = false;
    }
  });

  Boba.follow("/orders/events", {
    async onResync() {
      document.dispatchEvent(new CustomEvent("boba:resync"));
      await reload();
    },
    async onEvent(message) {
      document.dispatchEvent(new CustomEvent("boba:event", { detail: message })); // shop_controls.js
      const number = message.order_number && String(message.order_number);
      if (!number) return;
      if (message.type === "order_created" && !orders.has(number)) {
        highlighted.set(number, Date.now());
        chime();
      }
      await refresh(number);
      setTimeout(() => refresh(number), 6000);
    },
    onStatus(state) {
      connection.textContent = state === "live" ? "live" : "reconnecting\u2026";
      connection.dataset.state = state;
    },
  });
  setInterval(tickAges, 1000);
  setInterval(() => reload().catch((err) => console.warn(err.message)), 30000);
})();
