// defectgen studio: paint a mask on a background, generate defects there, keep the good ones.
// Plain JavaScript, no libraries; every request carries the token from the page URL.
"use strict";

const studio = (() => {
  const token = new URLSearchParams(location.search).get("token") || "";
  const $ = (id) => document.getElementById(id);
  const imageCanvas = $("image-canvas");
  const maskCanvas = $("mask-canvas");
  const mask = maskCanvas.getContext("2d", { willReadFrequently: true });
  const undoStack = [];
  const UNDO_LIMIT = 30;
  let background = null; // id of the background on the canvas
  let erasing = false;
  let last = null; // last pointer position while painting

  async function api(path, options = {}) {
    const response = await fetch(path, { ...options, headers: { ...(options.headers || {}), "X-Studio-Token": token } });
    const json = (response.headers.get("content-type") || "").includes("json");
    const body = json ? await response.json() : await response.blob();
    if (!response.ok) throw new Error(json && body.error ? body.error : `${response.status} ${response.statusText}`);
    return body;
  }

  function say(text, error = false) {
    $("status").textContent = text;
    $("status").classList.toggle("error", error);
  }

  // --- background ---------------------------------------------------------------------------

  async function loadBackground(id) {
    say("loading background…");
    const blob = await api(`/api/background?id=${encodeURIComponent(id)}`);
    const bitmap = await createImageBitmap(blob);
    for (const canvas of [imageCanvas, maskCanvas]) {
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
    }
    imageCanvas.getContext("2d").drawImage(bitmap, 0, 0);
    mask.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
    undoStack.length = 0;
    background = id;
    say(`${bitmap.width}×${bitmap.height} px: paint the mask`);
  }

  async function upload(file) {
    say("checking your image…");
    const info = await api("/api/upload", { method: "POST", body: file });
    const option = new Option(`${file.name} (${info.width}×${info.height})`, info.id);
    $("background").add(option, 0);
    $("background").value = info.id;
    await loadBackground(info.id);
    if (info.warning) say(info.warning, true);
  }

  // --- painting -------------------------------------------------------------------------------

  function remember() {
    undoStack.push(mask.getImageData(0, 0, maskCanvas.width, maskCanvas.height));
    if (undoStack.length > UNDO_LIMIT) undoStack.shift();
  }

  function canvasPoint(event) {
    const box = maskCanvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * maskCanvas.width) / box.width,
      y: ((event.clientY - box.top) * maskCanvas.height) / box.height,
    };
  }

  function stroke(from, to) {
    const size = Number($("brush").value);
    mask.globalCompositeOperation = erasing ? "destination-out" : "source-over";
    mask.strokeStyle = mask.fillStyle = "rgb(255, 0, 0)";
    mask.lineWidth = size;
    mask.lineCap = mask.lineJoin = "round";
    mask.beginPath();
    mask.moveTo(from.x, from.y);
    mask.lineTo(to.x, to.y);
    mask.stroke();
    mask.beginPath();
    mask.arc(to.x, to.y, size / 2, 0, 2 * Math.PI);
    mask.fill();
    mask.globalCompositeOperation = "source-over";
  }

  maskCanvas.addEventListener("pointerdown", (event) => {
    if (!background) return;
    maskCanvas.setPointerCapture(event.pointerId);
    remember();
    last = canvasPoint(event);
    stroke(last, last);
  });
  maskCanvas.addEventListener("pointermove", (event) => {
    if (!last) return;
    const point = canvasPoint(event);
    stroke(last, point);
    last = point;
  });
  for (const name of ["pointerup", "pointercancel"]) maskCanvas.addEventListener(name, () => (last = null));

  /** The mask as the server reads it: a PNG, opaque white where painted (alpha > 127), else transparent. */
  function maskDataURL() {
    const data = mask.getImageData(0, 0, maskCanvas.width, maskCanvas.height);
    const out = new ImageData(maskCanvas.width, maskCanvas.height);
    for (let i = 3; i < data.data.length; i += 4) {
      const on = data.data[i] > 127 ? 255 : 0;
      out.data[i - 3] = out.data[i - 2] = out.data[i - 1] = out.data[i] = on;
    }
    const canvas = document.createElement("canvas");
    canvas.width = maskCanvas.width;
    canvas.height = maskCanvas.height;
    canvas.getContext("2d").putImageData(out, 0, 0);
    return canvas.toDataURL("image/png");
  }

  function painted(data) {
    for (let i = 3; i < data.length; i += 4) if (data[i] > 127) return true;
    return false;
  }

  async function realShape() {
    const seed = Math.floor(Math.random() * 1e9);
    const blob = await api(`/api/shape?background=${encodeURIComponent(background)}&class_id=${$("class").value}&seed=${seed}`);
    const bitmap = await createImageBitmap(blob);
    const canvas = document.createElement("canvas");
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    const context = canvas.getContext("2d");
    context.drawImage(bitmap, 0, 0);
    const shape = context.getImageData(0, 0, canvas.width, canvas.height).data;
    remember();
    const data = mask.getImageData(0, 0, maskCanvas.width, maskCanvas.height);
    for (let i = 0; i < shape.length; i += 4) {
      if (shape[i] > 127) [data.data[i], data.data[i + 1], data.data[i + 2], data.data[i + 3]] = [255, 0, 0, 255];
    }
    mask.putImageData(data, 0, 0);
  }

  // --- generating and keeping -------------------------------------------------------------------

  async function generate() {
    const data = mask.getImageData(0, 0, maskCanvas.width, maskCanvas.height).data;
    if (!painted(data)) return say("paint a mask first: where should the defect go?", true);
    const request = {
      background,
      class_id: Number($("class").value),
      seed: Number($("seed").value),
      draws: Number($("draws").value),
      severity: $("severity-on").checked ? Number($("severity").value) : null,
      mask: maskDataURL(),
    };
    const outline = outlineOf(data, maskCanvas.width, maskCanvas.height);
    $("generate").disabled = true;
    $("progress").hidden = false;
    $("progress").value = 0;
    $("results").replaceChildren();
    try {
      const { job } = await api("/api/generate", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(request),
      });
      await follow(job, outline);
    } catch (error) {
      say(error.message, true);
    } finally {
      $("generate").disabled = false;
      $("progress").hidden = true;
    }
  }

  async function follow(job, outline) {
    const shown = new Set();
    for (;;) {
      const state = await api(`/api/jobs/${job}?since=${shown.size}`);
      $("progress").max = state.total;
      $("progress").value = state.done;
      for (const result of state.results) {
        if (!shown.has(result.draw)) {
          shown.add(result.draw);
          $("results").append(card(job, result, outline));
        }
      }
      if (state.error) throw new Error(state.error);
      if (state.finished) return say(`${state.total} draw(s) ready: keep the good ones`);
      say(`painting draw ${state.done + 1} of ${state.total}…`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  function outlineOf(data, width, height) {
    const on = (x, y) => x >= 0 && y >= 0 && x < width && y < height && data[(y * width + x) * 4 + 3] > 127;
    const out = new ImageData(width, height);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (on(x, y) && !(on(x - 1, y) && on(x + 1, y) && on(x, y - 1) && on(x, y + 1))) {
          const i = (y * width + x) * 4;
          [out.data[i], out.data[i + 1], out.data[i + 2], out.data[i + 3]] = [255, 214, 0, 255];
        }
      }
    }
    return out;
  }

  function card(job, result, outline) {
    const figure = document.createElement("figure");
    figure.className = "result";
    const frame = document.createElement("div");
    frame.className = "frame";
    const image = new Image();
    image.src = result.image;
    image.alt = `draw with seed ${result.seed}`;
    const overlay = document.createElement("canvas");
    overlay.className = "outline";
    overlay.width = outline.width;
    overlay.height = outline.height;
    overlay.getContext("2d").putImageData(outline, 0, 0);
    frame.append(image, overlay);
    const caption = document.createElement("figcaption");
    caption.append(`seed ${result.seed}`);
    const keep = document.createElement("button");
    keep.type = "button";
    keep.className = "keep";
    keep.textContent = result.kept ? `Kept: ${result.kept.split("/").pop()}` : "Keep";
    keep.disabled = Boolean(result.kept);
    keep.addEventListener("click", async () => {
      keep.disabled = true;
      try {
        const record = await api("/api/keep", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ job, draw: result.draw }),
        });
        keep.textContent = `Kept: ${record.image.split("/").pop()}`;
        await refreshCount();
      } catch (error) {
        keep.disabled = false;
        say(error.message, true);
      }
    });
    caption.append(keep);
    figure.append(frame, caption);
    return figure;
  }

  async function refreshCount() {
    const info = await api("/api/info");
    $("kept-count").textContent = `${info.kept} kept in ${info.out}`;
    return info;
  }

  // --- wiring ------------------------------------------------------------------------------------

  function setErasing(value) {
    erasing = value;
    $("paint").classList.toggle("on", !value);
    $("erase").classList.toggle("on", value);
    $("paint").setAttribute("aria-pressed", String(!value));
    $("erase").setAttribute("aria-pressed", String(value));
  }

  async function start() {
    const guard = (action) => async (...args) => {
      try {
        await action(...args);
      } catch (error) {
        say(error.message, true);
      }
    };
    const info = await refreshCount();
    for (const item of info.classes) $("class").add(new Option(item.name, item.id));
    for (const item of info.backgrounds) $("background").add(new Option(item.name, item.id));
    $("background-note").textContent = `${info.backgrounds.length} ${info.background_note}`;
    $("draws").max = info.max_draws;
    $("severity-control").hidden = !info.severity;
    $("severity-on").addEventListener("change", () => ($("severity").disabled = !$("severity-on").checked));
    $("severity").addEventListener("input", () => ($("severity-value").textContent = Number($("severity").value).toFixed(2)));
    $("background").addEventListener("change", guard(() => loadBackground($("background").value)));
    $("upload").addEventListener("change", guard(() => $("upload").files[0] && upload($("upload").files[0])));
    $("brush").addEventListener("input", () => ($("brush-size").textContent = $("brush").value));
    $("paint").addEventListener("click", () => setErasing(false));
    $("erase").addEventListener("click", () => setErasing(true));
    $("undo").addEventListener("click", () => undoStack.length && mask.putImageData(undoStack.pop(), 0, 0));
    $("clear").addEventListener("click", () => {
      remember();
      mask.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
    });
    $("real-shape").addEventListener("click", guard(realShape));
    $("generate").addEventListener("click", guard(generate));
    $("outline").addEventListener("change", () => document.body.classList.toggle("no-outline", !$("outline").checked));
    if (info.backgrounds.length) await loadBackground(info.backgrounds[0].id);
    document.body.dataset.ready = "true";
  }

  start().catch((error) => say(error.message, true));
  return { maskDataURL };
})();
