"use strict";
/*
 * The TV board: public data only (GET /api/orders has no phone numbers, and the events
 * carry just number + status). Orders move between "Preparing" and "Ready"; picked-up
 * and cancelled ones leave the board. Each tile shows the number and the first name on
 * the cup; a preparing one also its wait (GET /api/shop `waits`, CONTRACT §12), fetched
 * again on every event since orders done or added change it. Nothing about sold-out items.
 */
(function () {
  const ON_BOARD = { received: "preparing", ready: "ready" };
  const board = new Map(); // order_number -> {status, since}
  const preparing = document.getElementById("preparing");
  const ready = document.getElementById("ready");
  const connection = document.getElementById("connection");
  let sequence = 0;
  const names = new Map(); // order_number -> first name on the cup
  let waits = {};

  function firstName(name) {
    return name ? String(name).trim().split(/\s+/)[0] : "";
  }

  let waitsLoading = null;
  let waitsAgain = false;
  function reloadWaits() {
    // Never awaited by the event loop: a slow fetch must not hold up the next event.
    // Calls while one is running coalesce into one more fetch after it.
    if (waitsLoading) { waitsAgain = true; return waitsLoading; }
    waitsLoading = (async () => {
      do {
        waitsAgain = false;
        try {
          waits = (await Boba.getJSON("/api/shop")).waits || {};
        } catch (err) {
          console.warn("waits:", err.message);
        }
        render();
      } while (waitsAgain);
      waitsLoading = null;
    })();
    return waitsLoading;
  }

  function place(number, status, fresh = true) {
    if (!(status in ON_BOARD)) {
      board.delete(number);
      return;
    }
    const known = board.get(number);
    if (known && known.status === status) return;
    board.set(number, { status, since: ++sequence, fresh: fresh ? Date.now() : 0 });
  }

  function tile(number, entry) {
    const item = document.createElement("li");
    item.className = "tile " + ON_BOARD[entry.status];
    if (Date.now() - entry.fresh < 4000) item.classList.add("fresh");
    item.dataset.order = number;
    item.dataset.status = entry.status;
    const num = document.createElement("span");
    num.className = "number";
    num.textContent = number;
    const label = document.createElement("span");
    label.className = "label";
    const wait = entry.status === "received" ? waits[number] : undefined;
    // a preparing tile says its wait instead of "Preparing" (its column already says so)
    label.textContent = entry.status === "ready" ? "\u2714 Ready"
      : wait !== undefined ? "\u25D4 ~" + wait + " min" : "\u25D4 Preparing";
    if (wait !== undefined) label.dataset.wait = String(wait);
    // one line under the number: first name, status, wait (tiles keep their height)
    const meta = document.createElement("span");
    meta.className = "meta";
    const name = names.get(number);
    if (name) meta.append(Object.assign(document.createElement("span"),
      { className: "name", textContent: name }));
    meta.append(label);
    item.append(num, meta);
    return item;
  }

  function render() {
    const entries = [...board.entries()].sort((a, b) => a[1].since - b[1].since);
    preparing.replaceChildren(
      ...entries.filter(([, e]) => e.status === "received").map(([n, e]) => tile(n, e)),
    );
    ready.replaceChildren(
      ...entries.filter(([, e]) => e.status === "ready").map(([n, e]) => tile(n, e)),
    );
    // smaller tiles when a column fills up, so every number stays on screen (never < 56 px)
    for (const column of [preparing, ready]) {
      const n = column.children.length;
      column.dataset.density = n > 12 ? "3" : n > 4 ? "2" : "1";
    }
    document.getElementById("preparing-count").textContent = preparing.children.length;
    document.getElementById("ready-count").textContent = ready.children.length;
    document.body.dataset.orders = board.size;
  }

  async function reload() {
    const orders = await Boba.getJSON("/api/orders?status=active&limit=500");
    const seen = new Set();
    const firstLoad = board.size === 0; // nothing is "new" on the first look at the board
    // newest first from the API: place oldest first so they keep their order on screen
    for (const order of orders.slice().reverse()) {
      seen.add(order.order_number);
      if (order.name) names.set(order.order_number, firstName(order.name));
      else names.delete(order.order_number);
      place(order.order_number, order.status, !firstLoad);
    }
    for (const number of [...board.keys()]) if (!seen.has(number)) board.delete(number);
    for (const number of [...names.keys()]) if (!seen.has(number)) names.delete(number);
    render();
    reloadWaits();
  }

  async function learnName(number) {
    // An event carries no name: a new order's comes from the public list.
    try {
      const orders = await Boba.getJSON("/api/orders?status=active&limit=500");
      const order = orders.find((o) => o.order_number === number);
      if (order && order.name) names.set(number, firstName(order.name));
    } catch (err) {
      console.warn("names:", err.message);
    }
  }

  Boba.follow("/orders/events", {
    onResync: reload,
    async onEvent(message) {
      if (!message.order_number || !message.status) return;
      const number = String(message.order_number);
      place(number, message.status);
      render();
      if (message.type === "order_created") learnName(number).then(render);
      reloadWaits();
    },
    onStatus(state) {
      connection.textContent = state === "live" ? "live" : "reconnecting\u2026";
      connection.dataset.state = state;
    },
  });
  setInterval(render, 2000); // lets the "fresh" highlight fade without an event
})();
