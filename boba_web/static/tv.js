"use strict";
/*
 * The TV board: public data only (GET /api/orders has no phone numbers, and the events
 * carry just number + status). Orders move between "Preparing" and "Ready"; picked-up
 * and cancelled ones leave the board.
 */
(function () {
  const ON_BOARD = { received: "preparing", ready: "ready" };
  const board = new Map(); // order_number -> {status, since}
  const preparing = document.getElementById("preparing");
  const ready = document.getElementById("ready");
  const connection = document.getElementById("connection");
  let sequence = 0;

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
    label.textContent = entry.status === "ready" ? "\u2714 Ready" : "\u25D4 Preparing";
    item.append(num, label);
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
      place(order.order_number, order.status, !firstLoad);
    }
    for (const number of [...board.keys()]) if (!seen.has(number)) board.delete(number);
    render();
  }

  Boba.follow("/orders/events", {
    onResync: reload,
    onEvent(message) {
      if (!message.order_number || !message.status) return;
      place(String(message.order_number), message.status);
      render();
    },
    onStatus(state) {
      connection.textContent = state === "live" ? "live" : "reconnecting\u2026";
      connection.dataset.state = state;
    },
  });
  setInterval(render, 2000); // lets the "fresh" highlight fade without an event
})();
