// The recording player: reads the stream of pictures the portal decodes
// from a .vrec file (see crates/web/src/player.rs for its records), draws
// each on the canvas when the playback clock reaches its time, the pointer
// on a canvas above it, and seeks by opening a stream from another time
// (the server starts it from the key point before that time). A stream is
// made for one speed: a new speed opens a new one from where the clock is.
"use strict";
(() => {
  const root = document.getElementById("player");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const api = root.dataset.api;
  const screen = $("screen"), ctx = screen.getContext("2d");
  const overlay = $("pointer"), pctx = overlay.getContext("2d");
  const playButton = $("play"), speedSelect = $("speed"), seekBar = $("seek");
  const clock = $("clock"), badge = $("badge"), note = $("player-note");
  const timeline = $("timeline"), markerList = $("markers");
  // How far ahead of the clock the stream is read, in recording µs per ×1.
  const AHEAD_US = 3e6;
  // A picture drawn later than this after its time counts as late.
  const LATE_MS = 250;

  let info = null, playing = false, speed = 1, position = 0;
  let base = { wall: 0, t: 0 };
  let queue = [], generation = 0, abort = null, dragging = false;
  let pointer = null;
  const shapes = new Map();
  // What the tests and the benchmark read: pictures drawn, drawn late,
  // frames the clock held for the stream, the
  // time shown, and how long the first picture (after opening, or the
  // last seek) took.
  const stats = { drawn: 0, late: 0, held: 0, shown: -1, ended: false, stream: 0, firstPictureMs: null, opened: 0 };

  const now = () => (playing ? base.t + (performance.now() - base.wall) * 1000 * speed : position);
  const fmt = (us) => {
    const s = Math.floor(us / 1e6), h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(s % 60).padStart(2, "0");
  };
  const say = (text, bad) => { note.textContent = text || ""; note.className = bad ? "bad" : ""; };

  async function start() {
    let r, j;
    try {
      r = await fetch(api + "/info", { credentials: "same-origin" });
      j = await r.json();
    } catch (e) {
      say("the recording could not be opened: " + e, true);
      return;
    }
    if (!r.ok) {
      badge.textContent = r.status === 409 ? "altered" : "unavailable";
      badge.className = "badge bad";
      say(j.error || ("HTTP " + r.status), true);
      return;
    }
    info = j;
    for (const c of [screen, overlay]) { c.width = info.width; c.height = info.height; }
    seekBar.max = info.duration_us;
    const v = info.verdict;
    badge.textContent = v.state === "verified" ? "SHA-256 verified" : v.state;
    badge.className = "badge " + (v.state === "verified" ? "ok" : "warn");
    badge.title = v.text + " (" + v.sha256 + ")";
    if (info.cut_off) say(info.cut_off, false);
    for (const m of info.markers) {
      const kind = m.kind.split(".")[0];
      const left = info.duration_us ? (100 * m.t / info.duration_us) : 0;
      const b = document.createElement("button");
      b.type = "button";
      b.className = "marker " + kind;
      b.style.left = left + "%";
      b.title = fmt(m.t) + " " + m.kind + ": " + m.text;
      b.dataset.t = m.t;
      b.addEventListener("click", () => seekTo(m.t));
      timeline.appendChild(b);
      const li = document.createElement("li");
      const jump = document.createElement("button");
      jump.type = "button";
      jump.textContent = fmt(m.t);
      jump.dataset.t = m.t;
      jump.addEventListener("click", () => seekTo(m.t));
      li.append(jump, " " + m.kind + ": " + m.text);
      markerList.appendChild(li);
    }
    playButton.disabled = false;
    // The first picture is timed from the page's navigation (performance.now()'s origin).
    stats.opened = 0;
    open(0);
    requestAnimationFrame(tick);
  }

  function clear() {
    for (const it of queue) if (it.bitmap) it.bitmap.close();
    queue = [];
  }

  async function open(from) {
    const gen = ++generation;
    if (abort) abort.abort();
    abort = new AbortController();
    clear();
    stats.ended = false;
    stats.stream++;
    let reader;
    try {
      const r = await fetch(api + "/stream?from=" + Math.floor(from) + "&speed=" + speed, { signal: abort.signal, credentials: "same-origin" });
      if (!r.ok) {
        const j = await r.json().catch(() => ({}));
        say(j.error || ("HTTP " + r.status), true);
        return;
      }
      reader = r.body.getReader();
    } catch (e) {
      if (gen === generation) say("the stream failed: " + e, true);
      return;
    }
    let buf = new Uint8Array(0);
    while (gen === generation) {
      // Read ahead of the clock only so far: the server's decoder waits meanwhile.
      while (gen === generation && queue.length > 32 && queue[queue.length - 1].t - now() > AHEAD_US * speed) {
        await new Promise((r) => setTimeout(r, 40));
      }
      let chunk;
      try { chunk = await reader.read(); } catch (e) { return; }
      if (chunk.done || gen !== generation) break;
      const joined = new Uint8Array(buf.length + chunk.value.length);
      joined.set(buf); joined.set(chunk.value, buf.length);
      buf = joined;
      let at = 0;
      for (;;) {
        const rec = parse(buf, at);
        if (!rec) break;
        at = rec.next;
        if (rec.item) queue.push(rec.item);
      }
      buf = buf.slice(at);
    }
    if (gen === generation) reader.cancel().catch(() => {});
  }

  // One record of the stream at `at`, or null if it is not all there yet.
  function parse(buf, at) {
    const left = buf.length - at;
    if (left < 1) return null;
    const d = new DataView(buf.buffer, buf.byteOffset + at, left);
    const u64 = (o) => Number(d.getBigUint64(o, true));
    switch (d.getUint8(0)) {
      case 0x50: { // 'P'
        if (left < 21) return null;
        const len = d.getUint32(17, true);
        if (left < 21 + len) return null;
        const png = buf.slice(at + 21, at + 21 + len);
        const item = { type: "P", t: u64(1), x: d.getUint16(9, true), y: d.getUint16(11, true), bitmap: null };
        item.ready = createImageBitmap(new Blob([png], { type: "image/png" }), { premultiplyAlpha: "none", colorSpaceConversion: "none" })
          .then((b) => { item.bitmap = b; }, () => { item.failed = true; });
        return { item, next: at + 21 + len };
      }
      case 0x43: { // 'C'
        if (left < 26) return null;
        return { item: { type: "C", t: u64(1), x: d.getInt32(9, true), y: d.getInt32(13, true), visible: d.getUint8(17) === 1, shape: u64(18) }, next: at + 26 };
      }
      case 0x53: { // 'S'
        if (left < 17) return null;
        const len = d.getUint32(13, true);
        if (left < 17 + len) return null;
        const serial = u64(1), shape = { hx: d.getUint16(9, true), hy: d.getUint16(11, true), bitmap: null };
        createImageBitmap(new Blob([buf.slice(at + 17, at + 17 + len)], { type: "image/png" }), { premultiplyAlpha: "none" })
          .then((b) => { shape.bitmap = b; drawPointer(); });
        shapes.set(serial, shape);
        return { item: null, next: at + 17 + len };
      }
      case 0x45: { // 'E'
        if (left < 6) return null;
        const len = d.getUint32(2, true);
        if (left < 6 + len) return null;
        const text = new TextDecoder().decode(buf.slice(at + 6, at + 6 + len));
        return { item: { type: "E", t: -1, code: d.getUint8(1), text }, next: at + 6 + len };
      }
      default:
        say("the stream holds an unknown record", true);
        generation++;
        return null;
    }
  }

  function drawPointer() {
    pctx.clearRect(0, 0, overlay.width, overlay.height);
    if (!pointer || !pointer.visible) return;
    const s = shapes.get(pointer.shape);
    if (s && s.bitmap) pctx.drawImage(s.bitmap, pointer.x - s.hx, pointer.y - s.hy);
  }

  function tick() {
    let t = now();
    // Waiting for the stream (nothing queued, or the next picture still
    // decoding): the clock holds, as a player buffering does, rather than
    // running ahead of what can be shown.
    const waiting = !queue.length ? !stats.ended : (queue[0].type === "P" && !queue[0].bitmap && !queue[0].failed);
    if (playing && waiting && t > position && (!queue.length || queue[0].t <= t)) {
      t = Math.max(position, queue.length ? Math.min(t, queue[0].t) : position);
      base = { wall: performance.now(), t };
      stats.held++;
    }
    while (queue.length) {
      const it = queue[0];
      if (it.type === "E") {
        stats.ended = true;
        if (it.code !== 0) say(it.code === 1 ? "The recording is cut off here: " + it.text : "Playback failed: " + it.text, it.code === 2);
        queue.shift();
        continue;
      }
      if (it.t > t) break;
      if (it.type === "P") {
        if (!it.bitmap && !it.failed) break; // still decoding: in order, so wait
        if (it.bitmap) {
          ctx.drawImage(it.bitmap, it.x, it.y);
          it.bitmap.close();
          stats.drawn++;
          if (playing && (t - it.t) / 1000 / speed > LATE_MS) stats.late++;
          if (stats.firstPictureMs === null) stats.firstPictureMs = performance.now() - stats.opened;
        }
        stats.shown = it.t;
      } else if (it.type === "C") {
        pointer = it;
        drawPointer();
      }
      queue.shift();
    }
    if (playing) {
      position = Math.min(t, info.duration_us);
      if (t >= info.duration_us && stats.ended && !queue.length) pause();
    }
    if (!dragging) seekBar.value = position;
    clock.textContent = fmt(position) + " / " + fmt(info.duration_us);
    requestAnimationFrame(tick);
  }

  function play() {
    if (position >= info.duration_us) seekTo(0);
    base = { wall: performance.now(), t: position };
    playing = true;
    playButton.textContent = "Pause";
  }
  function pause() {
    position = Math.min(now(), info.duration_us);
    playing = false;
    playButton.textContent = "Play";
  }
  function seekTo(t) {
    t = Math.max(0, Math.min(Number(t), info.duration_us));
    position = t;
    base = { wall: performance.now(), t };
    stats.shown = -1;
    stats.opened = performance.now();
    stats.firstPictureMs = null;
    open(t);
  }

  playButton.addEventListener("click", () => (playing ? pause() : play()));
  speedSelect.addEventListener("change", () => {
    position = now();
    base = { wall: performance.now(), t: position };
    speed = Number(speedSelect.value);
    // Above x1 the server merges the updates of each display refresh, so
    // the stream is asked for again, for this speed, from here.
    if (info) open(position);
  });
  seekBar.addEventListener("input", () => { dragging = true; clock.textContent = fmt(seekBar.value) + " / " + fmt(info.duration_us); });
  seekBar.addEventListener("change", () => { dragging = false; seekTo(seekBar.value); });

  // For the tests and the benchmark: what the player has done.
  window.vigilPlayer = {
    state: () => ({ position, playing, speed, queued: queue.length, ...stats }),
    seek: seekTo,
    play, pause,
  };
  start();
})();
