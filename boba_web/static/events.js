"use strict";
/*
 * Follow GET /orders/events (CONTRACT §7) with fetch() instead of EventSource, because a
 * fresh EventSource cannot send Last-Event-ID after it gave up, and a silent, half-dead
 * connection is only noticed with a watchdog. Events resume from the last id seen; when no
 * id is known yet the page reloads its list once the stream is open, so nothing falls in
 * between.
 */
(function () {
  const SILENCE_MS = 40000; // the server pings at least every 15 s
  const MAX_BACKOFF_MS = 10000;

  function follow(url, opts) {
    let lastId = null;
    let backoff = 300;
    let current = null;
    const status = opts.onStatus || function () {};

    async function readStream(response, arm) {
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let dataLines = [];
      let eventId = null;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        arm();
        buffer += value.replace(/\r\n?/g, "\n");
        let newline;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          if (line === "") {
            if (eventId !== null) lastId = eventId;
            if (dataLines.length) {
              let message = null;
              try {
                message = JSON.parse(dataLines.join("\n"));
              } catch (err) {
                console.warn("skipping an event that is not JSON", err);
              }
              if (message) await opts.onEvent(message, lastId);
            }
            dataLines = [];
            eventId = null;
            continue;
          }
          if (line.startsWith(":")) continue; // comment, e.g. ": ping"
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? "" : line.slice(colon + 1);
          if (val.startsWith(" ")) val = val.slice(1);
          if (field === "data") dataLines.push(val);
          else if (field === "id" && !val.includes("\0")) eventId = val;
        }
      }
    }

    async function connectOnce() {
      const controller = new AbortController();
      current = controller;
      let watchdog = null;
      const arm = () => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => controller.abort(), SILENCE_MS);
      };
      const headers = { Accept: "text/event-stream" };
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      arm();
      try {
        const response = await fetch(url, {
          headers,
          cache: "no-store",
          credentials: "same-origin",
          signal: controller.signal,
        });
        if (!response.ok || !response.body) {
          throw new Error("the event stream answered " + response.status);
        }
        if (lastId === null && opts.onResync) await opts.onResync();
        status("live");
        backoff = 300;
        await readStream(response, arm);
      } finally {
        clearTimeout(watchdog);
        controller.abort();
      }
    }

    async function run() {
      for (;;) {
        try {
          await connectOnce();
        } catch (err) {
          if (err && err.name !== "AbortError") console.warn("event stream:", err.message || err);
        }
        status("reconnecting");
        await new Promise((resolve) => setTimeout(resolve, backoff));
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    }

    run();
    return {
      lastEventId: () => lastId,
      /* Drop the connection now (tests, and pages coming back from sleep). */
      reconnect: () => current && current.abort(),
    };
  }

  async function getJSON(url) {
    const response = await fetch(url, { cache: "no-store", credentials: "same-origin" });
    if (!response.ok) {
      const error = new Error(url + " answered " + response.status);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  window.Boba = { follow, getJSON };
})();
