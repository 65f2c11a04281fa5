"use strict";
/*
 * The console's shop controls (CONTRACT §12): the pause switch for phone orders, one
 * toggle per flavor, topping and add-on (sold out / available), the current wait, and
 * each preparing order's wait on its card. One tap changes the stored state
 * (PUT /api/shop, PUT /api/menu/{kind}/{name}); every console hears it over the event
 * stream (`shop_changed`, `menu_changed`, which barista.js re-dispatches as a
 * `boba:event` DOM event) and redraws from GET /api/shop and GET /api/menu.
 */
(function () {
  const panel = document.getElementById("shop");
  if (!panel) return;
  const pause = document.getElementById("taking-orders");
  const status = document.getElementById("shop-status");
  const waitNow = document.getElementById("wait-now");
  const items = document.getElementById("menu-items");
  const orders = document.getElementById("orders");
  const notice = document.getElementById("notice");
  const KIND_LABELS = { flavors: "Flavors", toppings: "Toppings", addons: "Add-ons" };
  let waits = {};
  let busy = false;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function say(text, kind) {
    notice.textContent = text;
    notice.dataset.kind = kind || "info";
  }

  function drawShop(shop) {
    const taking = shop.taking_orders;
    pause.setAttribute("aria-pressed", String(taking));
    pause.dataset.taking = String(taking);
    pause.textContent = taking ? "Taking phone orders" : "Phone orders paused";
    pause.title = taking ? "Tap to pause phone orders" : "Tap to take phone orders again";
    let text;
    if (!shop.open_now) text = "Closed now" + (shop.today ? " (today " + shop.today + ")" : "");
    else text = shop.today ? "Open today " + shop.today : "Open";
    status.textContent = text;
    status.dataset.open = String(shop.open_now);
    waitNow.textContent = "Wait now: " + shop.wait_minutes + " min";
    waits = shop.waits || {};
    annotateCards();
  }

  function drawMenu(menu) {
    const groups = [];
    for (const kind of ["flavors", "toppings", "addons"]) {
      if (!menu[kind] || !menu[kind].length) continue;
      const group = el("div", "menu-group");
      group.append(el("h3", "", KIND_LABELS[kind]));
      for (const item of menu[kind]) {
        const b = el("button", "item-toggle", "");
        b.type = "button";
        b.dataset.kind = kind;
        b.dataset.name = item.name;
        b.dataset.available = String(item.available);
        b.setAttribute("aria-pressed", String(!item.available));
        b.append(el("span", "item-name", item.name));
        b.append(el("span", "item-state", item.available ? "available" : "SOLD OUT"));
        b.title = item.available ? "Tap to mark sold out" : "Tap to make available again";
        group.append(b);
      }
      groups.push(group);
    }
    items.replaceChildren(...groups);
  }

  function annotateCards() {
    for (const card of orders.querySelectorAll("article.order")) {
      const number = card.dataset.order;
      let tag = card.querySelector(".wait");
      const minutes = card.dataset.status === "received" ? waits[number] : undefined;
      if (minutes === undefined) {
        if (tag) tag.remove();
        continue;
      }
      if (!tag) {
        tag = el("span", "wait");
        const head = card.querySelector(".order-head");
        head.insertBefore(tag, head.querySelector(".age"));
      }
      const text = "~" + minutes + " min";
      if (tag.textContent !== text) tag.textContent = text;
    }
  }

  async function reload() {
    try {
      const [shop, menu] = await Promise.all([
        Boba.getJSON("/api/shop"),
        Boba.getJSON("/api/menu"),
      ]);
      drawShop(shop);
      drawMenu(menu);
      panel.dataset.loaded = "true";
    } catch (err) {
      console.warn("shop controls:", err.message);
    }
  }
  async function reloadShop() {
    try {
      drawShop(await Boba.getJSON("/api/shop"));
    } catch (err) {
      console.warn("shop controls:", err.message);
    }
  }

  async function put(url, body) {
    const response = await fetch(url, {
      method: "PUT",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (response.status === 401) { window.location.reload(); return null; }
    if (!response.ok) throw new Error(answer.error || "That did not work (" + response.status + ").");
    return answer;
  }

  pause.addEventListener("click", async () => {
    if (busy) return;
    busy = true;
    pause.disabled = true;
    const taking = pause.dataset.taking !== "true";
    try {
      const shop = await put("/api/shop", { taking_orders: taking });
      if (shop) {
        drawShop(shop);
        say(taking ? "Phone orders are on again." : "Phone orders are paused.", "info");
      }
    } catch (err) {
      say(err.message, "error");
    } finally {
      busy = false;
      pause.disabled = false;
    }
  });

  items.addEventListener("click", async (event) => {
    const b = event.target.closest("button.item-toggle");
    if (!b || b.disabled) return;
    const available = b.dataset.available !== "true";
    b.disabled = true;
    try {
      const url = "/api/menu/" + b.dataset.kind + "/" + encodeURIComponent(b.dataset.name);
      const item = await put(url, { available });
      if (item) {
        say(item.name + (item.available ? " is available again." : " is sold out."), "info");
        await reload();
      }
    } catch (err) {
      say(err.message, "error");
      b.disabled = false;
    }
  });

  document.addEventListener("boba:event", (event) => {
    const type = event.detail && event.detail.type;
    if (type === "menu_changed" || type === "shop_changed") reload();
    else reloadShop(); // an order came or went: the waits change
  });
  document.addEventListener("boba:resync", reload);
  new MutationObserver(annotateCards).observe(orders, { childList: true });
  reload();
  setInterval(reloadShop, 60000); // the open/closed line follows the clock
})();
