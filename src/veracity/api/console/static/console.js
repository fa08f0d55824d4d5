// The reviewer console: a client of veracity's JSON API, nothing more.
//
// Rules this file keeps (the page's Content-Security-Policy enforces the first two):
// - no inline script or style, and no request to any other origin;
// - every value from the service or a user is set with textContent or an attribute,
//   never parsed as HTML (no HTML-parsing property or method is used at all);
// - the API key lives in sessionStorage for this tab, is sent only as X-API-Key, and never
//   goes into a URL, a cookie or the console's own log.

const KEY_ITEM = "veracity.apiKey";
const IMAGE_TYPES = new Set(["image/jpeg", "image/png", "image/webp"]);
const BAND_WORDS = {
  real: "Real",
  fake: "Fake",
  inconclusive: "Inconclusive: the model declines to decide",
};

const $ = (selector, root = document) => root.querySelector(selector);

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function apiKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

// The service's one error shape: {"error": {"code", "message", "request_id"}}.
function errorMessage(status, body) {
  const error = body && body.error;
  if (error && error.message) return `${error.message} (${error.code}, HTTP ${status})`;
  return `The service answered HTTP ${status}.`;
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  headers.set("X-API-Key", apiKey() || "");
  const response = await fetch(path, { ...options, headers });
  const body = response.headers.get("content-type")?.includes("json")
    ? await response.json()
    : null;
  if (response.status === 401) {
    signOut("Your key was not accepted any more; sign in again.");
  }
  if (!response.ok) throw new Error(errorMessage(response.status, body));
  return body;
}

// fetch() cannot report upload progress; XMLHttpRequest can.
function upload(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", path);
    request.setRequestHeader("X-API-Key", apiKey() || "");
    request.responseType = "json";
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(Math.round((100 * event.loaded) / event.total));
    });
    request.addEventListener("load", () => {
      if (request.status >= 200 && request.status < 300) {
        resolve(request.response);
        return;
      }
      const error = new Error(errorMessage(request.status, request.response));
      error.status = request.status;
      reject(error);
    });
    request.addEventListener("error", () => reject(new Error("The upload did not reach the service.")));
    const form = new FormData();
    form.append("file", file, file.name);
    request.send(form);
  });
}

// --- signing in -------------------------------------------------------------------------

async function signIn(key) {
  const response = await fetch("/keys/me", { headers: { "X-API-Key": key } });
  if (response.status === 401) return { ok: false, message: "That API key was not accepted. Check it and try again." };
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    return { ok: false, message: errorMessage(response.status, body) };
  }
  sessionStorage.setItem(KEY_ITEM, key);
  return { ok: true, who: await response.json() };
}

function signOut(message = "") {
  sessionStorage.removeItem(KEY_ITEM);
  sessionStorage.removeItem(JOBS_ITEM);
  $("#who").hidden = true;
  $("#nav").hidden = true;
  $("#results").replaceChildren();
  $("#detail").replaceChildren();
  show("sign-in");
  $("#sign-in-message").textContent = message;
  $("#api-key").value = "";
  $("#api-key").focus();
}

function signedIn(who) {
  $("#who-key").textContent = who.key_id ? `key ${who.key_id}` : "no key needed";
  $("#who-admin").hidden = !who.admin;
  $("#nav-models").hidden = !who.admin;
  $("#who").hidden = false;
  $("#nav").hidden = false;
  $("#sign-in-message").textContent = "";
  show("analyse");
  resumeJobs();
}

function show(view) {
  for (const section of document.querySelectorAll("main > section")) {
    section.hidden = section.id !== `view-${view}`;
  }
  for (const button of document.querySelectorAll("#nav button")) {
    if (button.dataset.view === view) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  if (view === "history") loadHistory(true);
  if (view === "models") loadModels();
}

// --- analysing --------------------------------------------------------------------------

function analyse(files) {
  $("#analyse-message").textContent = "";
  for (const file of files) {
    const isImage = IMAGE_TYPES.has(file.type);
    const isVideo = file.type.startsWith("video/");
    if (!isImage && !isVideo) {
      $("#analyse-message").textContent = `${file.name}: not an image or video this service reads (JPEG, PNG, WebP, MP4, Matroska).`;
      continue;
    }
    const card = $("#result-template").content.firstElementChild.cloneNode(true);
    $(".name", card).textContent = file.name;
    $("#results").prepend(card);
    const progress = $("progress", card);
    const state = $(".state", card);
    state.textContent = "uploading";
    const path = isImage ? "/infer?explain=true" : "/infer/video";
    const onProgress = (percent) => {
      progress.value = percent;
      if (percent === 100) state.textContent = "analysing";
    };
    upload(path, file, onProgress)
      .then((answer) => {
        $(".progress-row", card).hidden = true;
        renderAnswer(card, answer, file);
      })
      .catch((error) => {
        // Too long or too large for one request: the same file as a job, which has its
        // own, larger limits (README, "Jobs").
        if (isVideo && error.status === 413) {
          state.textContent = "too long for one request: sending it as a job";
          return upload("/jobs/video", file, onProgress).then((job) => trackJob(card, job.url, file.name, file));
        }
        throw error;
      })
      .catch((error) => {
        progress.hidden = true;
        state.textContent = error.message;
        state.classList.add("error");
      });
  }
}

// --- jobs: long videos ------------------------------------------------------------------

// The tab's jobs, kept in sessionStorage so that a reload finds them again.
const JOBS_ITEM = "veracity.jobs";

function storedJobs() {
  try {
    return JSON.parse(sessionStorage.getItem(JOBS_ITEM) || "[]");
  } catch {
    return [];
  }
}

function trackJob(card, url, name, file) {
  const jobs = storedJobs().filter((job) => job.url !== url);
  sessionStorage.setItem(JOBS_ITEM, JSON.stringify([...jobs, { url, name }]));
  card.dataset.job = url;
  const progress = $("progress", card);
  progress.removeAttribute("value"); // indeterminate: the service reports status, not a share
  const state = $(".state", card);
  const poll = async () => {
    let job;
    try {
      job = await api(url);
    } catch (error) {
      state.textContent = error.message;
      state.classList.add("error");
      return;
    }
    if (job.status === "done") {
      $(".progress-row", card).hidden = true;
      renderAnswer(card, job.result, file);
      return;
    }
    if (job.status === "failed" || job.status === "cancelled") {
      progress.hidden = true;
      state.textContent = job.error ? `job ${job.status}: ${job.error.message}` : `job ${job.status}`;
      state.classList.add("error");
      return;
    }
    const since = job.started_at || job.created_at;
    state.textContent = `job ${job.status} since ${new Date(since).toLocaleTimeString()}`;
    setTimeout(poll, 1000);
  };
  poll();
}

function resumeJobs() {
  const shown = new Set([...document.querySelectorAll("[data-job]")].map((card) => card.dataset.job));
  for (const job of storedJobs()) {
    if (shown.has(job.url)) continue;
    const card = $("#result-template").content.firstElementChild.cloneNode(true);
    $(".name", card).textContent = job.name;
    $("#results").append(card);
    trackJob(card, job.url, job.name, null);
  }
}

function renderAnswer(card, answer, file) {
  const body = $(".body", card);
  body.hidden = false;
  const band = $(".band", card);
  band.dataset.verdict = answer.verdict;
  $(".band-word", card).textContent = BAND_WORDS[answer.verdict] || answer.verdict;
  $(".prob", card).textContent =
    answer.fake_prob === null || answer.fake_prob === undefined
      ? "no probability"
      : `P(fake) ${answer.fake_prob.toFixed(2)}${answer.calibrated ? ", calibrated" : ""}`;
  const reasons = $(".reasons", card);
  for (const reason of answer.reasons || []) {
    const item = element("li");
    item.append(element("strong", reason.code), document.createTextNode(`: ${reason.message}`));
    if (reason.action) item.append(element("div", `What to do: ${reason.action}`, "action"));
    reasons.append(item);
  }
  renderProvenance(card, answer);
  const facts = $(".facts", card);
  const add = (term, value) => {
    if (value === undefined || value === null) return;
    facts.append(element("dt", term), element("dd", value));
  };
  add("Model", `${answer.model_name} ${answer.model_version}`);
  if (answer.thresholds) add("Operating points", `real ≤ ${answer.thresholds.real}, fake ≥ ${answer.thresholds.fake}`);
  if (answer.quality) {
    add("Size", `${answer.quality.width} × ${answer.quality.height}`);
    add("JPEG quality (estimated)", answer.quality.jpeg_quality);
  }
  if (answer.video) add("Video", `${answer.video.codec}, ${answer.video.width} × ${answer.video.height}, ${answer.duration_s.toFixed(1)} s`);
  if (answer.segments && answer.segments.length) {
    const top = answer.segments[0];
    add("Most suspicious stretch", `${top.start_s.toFixed(1)}–${top.end_s.toFixed(1)} s, P(fake) ${top.fake_prob.toFixed(2)}`);
  }
  add("Request", answer.request_id);
  add("Prediction", answer.prediction_id);
  renderSeen(card, answer.seen_before || []);
  if (file && answer.explanation && answer.explanation.grid) {
    renderWhere(card, file, answer.explanation);
  }
  if (answer.timeline) renderTimeline(card, answer, file ? URL.createObjectURL(file) : null);
  const review = $(".review", card);
  if (answer.prediction_id) wireReview(review, answer.prediction_id);
  else review.hidden = true;
}

const PROVENANCE_STATES = {
  valid: "Valid, signed by a signer this deployment trusts",
  valid_untrusted: "Valid signature, but the signer is not on this deployment's trust list",
  invalid: "Invalid: the file was changed after signing, or the credentials are broken",
  remote_manifest_not_fetched: "Kept elsewhere (a remote manifest); not fetched",
  unreadable: "Not read within the service's limits",
};

function renderProvenance(card, answer) {
  if (answer.model_verdict && answer.model_verdict !== answer.verdict) {
    const note = $(".model-verdict", card);
    note.textContent = `The model alone said: ${BAND_WORDS[answer.model_verdict] || answer.model_verdict}`;
    note.hidden = false;
  }
  const provenance = answer.provenance;
  if (!provenance) return;
  const box = $(".provenance", card);
  box.hidden = false;
  box.dataset.state = provenance.present ? provenance.state : "none";
  $(".provenance-state", box).textContent = provenance.present
    ? PROVENANCE_STATES[provenance.state] || provenance.state
    : "None: the file carries no content credentials.";
  const facts = $(".provenance-facts", box);
  const add = (term, value) => {
    if (value === undefined || value === null || value === "") return;
    facts.append(element("dt", term), element("dd", value));
  };
  if (provenance.signer) {
    add("Signed by", [provenance.signer.organization, provenance.signer.common_name].filter(Boolean).join(", "));
  }
  add("Declared source", provenance.digital_source_type);
  add("Made with", provenance.claim_generator);
  add("Created", provenance.created);
  add("Actions", (provenance.actions || []).join(", "));
  if (provenance.ingredients_total) {
    const names = provenance.ingredients.map((i) => i.title || "untitled").join(", ");
    add("Ingredients", `${provenance.ingredients_total}: ${names}`);
  }
  add("Validation codes", (provenance.codes || []).join(", "));
  add("Remote manifest (not fetched)", provenance.remote_url);
}

function renderSeen(card, matches) {
  if (!matches.length) return;
  const box = $(".seen", card);
  box.hidden = false;
  const list = $("ul", box);
  for (const match of matches) {
    const item = element("li");
    const link = element("a", `${match.prediction_id.slice(0, 12)}…`);
    link.href = "#";
    link.addEventListener("click", (event) => {
      event.preventDefault();
      show("history");
      openDetail(match.prediction_id);
    });
    const label = match.review_label ? `reviewed ${match.review_label}` : "not reviewed";
    item.append(link, document.createTextNode(` answered ${match.verdict}, ${label}, distance ${match.distance}`));
    list.append(item);
  }
}

const METHOD_WORDS = {
  patch_probabilities: "Shown: the model's own P(fake) for each patch it read.",
  grad_cam: "Shown: Grad-CAM, where inside the patches the evidence for fake lies (relative: the reddest cell is the strongest, not a probability).",
};

// The explanation grid: rows of values covering the image evenly, row-major from the
// top-left. Each cell is painted on a canvas laid over the image, blue (low) to red (high).
function renderWhere(root, file, explanation) {
  const figure = $(".where", root);
  const image = $("img", figure);
  const canvas = $("canvas", figure);
  const method = $(".method", figure);
  const show = (found) => {
    paintGrid(canvas, found.grid);
    canvas.dataset.method = found.method;
    method.textContent = METHOD_WORDS[found.method] || found.method;
  };
  image.alt = "The analysed image";
  image.addEventListener("load", () => {
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    show(explanation);
    figure.hidden = false;
  });
  image.src = URL.createObjectURL(file);
  // The second method is computed only when asked for: it costs another pass of the model.
  const gradCam = $(".grad-cam", figure);
  gradCam.hidden = explanation.method === "grad_cam";
  gradCam.addEventListener("click", async () => {
    gradCam.disabled = true;
    method.textContent = "Computing Grad-CAM…";
    try {
      const answer = await upload("/infer?explain=true&explain_method=grad_cam", file, () => {});
      if (answer.explanation && answer.explanation.grid) {
        show(answer.explanation);
        gradCam.hidden = true;
      } else {
        method.textContent = (answer.explanation && answer.explanation.reason) || "No Grad-CAM for this image.";
      }
    } catch (error) {
      method.textContent = error.message;
    } finally {
      gradCam.disabled = false;
    }
  });
  const toggle = $(".overlay-toggle", figure);
  const opacity = $(".overlay-opacity", figure);
  const apply = () => {
    canvas.hidden = !toggle.checked;
    canvas.style.opacity = String(opacity.value / 100);
  };
  toggle.addEventListener("change", apply);
  opacity.addEventListener("input", apply);
  apply();
}

function paintGrid(canvas, grid) {
  const context = canvas.getContext("2d");
  const rows = grid.length;
  const columns = grid[0].length;
  context.clearRect(0, 0, canvas.width, canvas.height);
  for (let row = 0; row < rows; row += 1) {
    for (let column = 0; column < columns; column += 1) {
      const p = Math.min(1, Math.max(0, grid[row][column]));
      context.fillStyle = `rgb(${Math.round(49 + 116 * p)}, ${Math.round(54 - 54 * p)}, ${Math.round(149 - 111 * p)})`;
      const x0 = Math.round((column * canvas.width) / columns);
      const y0 = Math.round((row * canvas.height) / rows);
      const x1 = Math.round(((column + 1) * canvas.width) / columns);
      const y1 = Math.round(((row + 1) * canvas.height) / rows);
      context.fillRect(x0, y0, x1 - x0, y1 - y0);
    }
  }
  canvas.dataset.cells = String(rows * columns);
}

// A video's timeline: one point per sampled frame (time, calibrated P(fake)), the two
// operating points as dashed lines and the segments shaded. A click on the chart seeks the
// player to the nearest frame; each segment is also a button, for the keyboard.
const CHART_PAD = { left: 40, right: 10, top: 10, bottom: 24 };

function renderTimeline(card, answer, source) {
  const figure = $(".timeline", card);
  const video = $("video", figure);
  const canvas = $(".chart", figure);
  const frames = answer.timeline;
  const duration = Math.max(answer.duration_s || 0, ...frames.map((f) => f.timestamp_s), 0.001);
  if (source) video.src = source;
  else video.hidden = true;
  const seek = (seconds) => {
    if (!source) return;
    video.currentTime = seconds;
    video.dataset.sought = seconds.toFixed(2);
  };
  drawChart(canvas, frames, answer.segments || [], answer.thresholds, duration);
  canvas.setAttribute(
    "aria-label",
    `P(fake) of ${frames.length} frames over ${duration.toFixed(1)} s; ${(answer.segments || []).length} suspicious stretches`,
  );
  canvas.addEventListener("click", (event) => {
    const box = canvas.getBoundingClientRect();
    const x = ((event.clientX - box.left) * canvas.width) / box.width;
    const t = ((x - CHART_PAD.left) / (canvas.width - CHART_PAD.left - CHART_PAD.right)) * duration;
    let nearest = frames[0];
    for (const frame of frames) {
      if (Math.abs(frame.timestamp_s - t) < Math.abs(nearest.timestamp_s - t)) nearest = frame;
    }
    if (nearest) seek(nearest.timestamp_s);
  });
  const list = $(".segments", figure);
  for (const segment of answer.segments || []) {
    const button = element(
      "button",
      `${segment.start_s.toFixed(1)}–${segment.end_s.toFixed(1)} s: P(fake) ${segment.fake_prob.toFixed(2)}${segmentNote(segment)}`,
    );
    button.type = "button";
    button.addEventListener("click", () => seek(segment.start_s));
    const item = element("li");
    item.append(button);
    list.append(item);
  }
  figure.hidden = false;
}

// A segment found by temporal contrast also says how far it stands above the rest of its shot.
function segmentNote(segment) {
  const sustained = segment.sustained ? ", sustained" : "";
  if (segment.step == null) return sustained;
  return `${sustained}, ${segment.step.toFixed(2)} logits above the rest of its shot`;
}

function drawChart(canvas, frames, segments, thresholds, duration) {
  const context = canvas.getContext("2d");
  const width = canvas.width - CHART_PAD.left - CHART_PAD.right;
  const height = canvas.height - CHART_PAD.top - CHART_PAD.bottom;
  const x = (t) => CHART_PAD.left + (t / duration) * width;
  const y = (p) => CHART_PAD.top + (1 - p) * height;
  context.clearRect(0, 0, canvas.width, canvas.height);
  for (const segment of segments) {
    context.fillStyle = segment.sustained ? "rgba(165, 0, 38, 0.25)" : "rgba(165, 0, 38, 0.12)";
    context.fillRect(x(segment.start_s), CHART_PAD.top, Math.max(2, x(segment.end_s) - x(segment.start_s)), height);
  }
  context.strokeStyle = "#57606a";
  context.strokeRect(CHART_PAD.left, CHART_PAD.top, width, height);
  context.fillStyle = "#1b1f24";
  context.font = "12px system-ui, sans-serif";
  for (const p of [0, 0.5, 1]) context.fillText(p.toFixed(1), 8, y(p) + 4);
  context.fillText("0 s", CHART_PAD.left, canvas.height - 6);
  context.fillText(`${duration.toFixed(1)} s`, CHART_PAD.left + width - 30, canvas.height - 6);
  if (thresholds) {
    context.setLineDash([5, 4]);
    for (const [value, colour] of [[thresholds.real, "#0b5cad"], [thresholds.fake, "#a50026"]]) {
      context.strokeStyle = colour;
      context.beginPath();
      context.moveTo(CHART_PAD.left, y(value));
      context.lineTo(CHART_PAD.left + width, y(value));
      context.stroke();
    }
    context.setLineDash([]);
  }
  context.strokeStyle = "#1b1f24";
  context.beginPath();
  frames.forEach((frame, index) => {
    const method = index === 0 ? "moveTo" : "lineTo";
    context[method](x(frame.timestamp_s), y(frame.fake_prob));
  });
  context.stroke();
  const colours = { real: "#0b5cad", fake: "#a50026", inconclusive: "#57606a" };
  for (const frame of frames) {
    context.fillStyle = colours[frame.verdict] || "#57606a";
    context.beginPath();
    context.arc(x(frame.timestamp_s), y(frame.fake_prob), 3.5, 0, 2 * Math.PI);
    context.fill();
  }
  canvas.dataset.points = String(frames.length);
}

function wireReview(form, predictionId) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const label = event.submitter ? event.submitter.value : "";
    const note = form.elements.note.value.trim();
    const state = $(".review-state", form);
    try {
      const saved = await api(`/predictions/${encodeURIComponent(predictionId)}/feedback`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ label, note: note || null }),
      });
      state.textContent = reviewText(saved.review);
    } catch (error) {
      state.textContent = error.message;
    }
  });
}

function reviewText(review) {
  if (!review) return "Not reviewed";
  return `Reviewed ${review.label}${review.note ? `: ${review.note}` : ""}`;
}

// --- history ----------------------------------------------------------------------------

let nextCursor = null;

async function loadHistory(fresh) {
  const form = $("#history-filters");
  const query = new URLSearchParams({ limit: "20" });
  for (const name of ["verdict", "model_version", "reviewed", "order"]) {
    if (form.elements[name].value) query.set(name, form.elements[name].value);
  }
  // Dates are whole days in the reviewer's own time zone.
  if (form.elements.since.value) query.set("since", new Date(`${form.elements.since.value}T00:00:00`).toISOString());
  if (form.elements.until.value) {
    const end = new Date(`${form.elements.until.value}T00:00:00`);
    end.setDate(end.getDate() + 1);
    query.set("until", end.toISOString());
  }
  if (!fresh && nextCursor) query.set("cursor", nextCursor);
  const tbody = $("#history-table tbody");
  if (fresh) tbody.replaceChildren();
  $("#history-message").textContent = "";
  try {
    const page = await api(`/predictions?${query}`);
    for (const item of page.items) tbody.append(historyRow(item));
    if (fresh && !page.items.length) $("#history-message").textContent = "No predictions match.";
    nextCursor = page.next_cursor;
    $("#history-more").hidden = !nextCursor;
  } catch (error) {
    $("#history-message").textContent = error.message;
  }
}

function historyRow(item) {
  const row = element("tr");
  row.dataset.predictionId = item.prediction_id;
  const when = element("td");
  const link = element("a", new Date(item.created_at).toLocaleString());
  link.href = "#";
  link.addEventListener("click", (event) => {
    event.preventDefault();
    openDetail(item.prediction_id);
  });
  when.append(link);
  const verdict = element("td", item.verdict, "verdict");
  verdict.dataset.verdict = item.verdict;
  row.append(
    when,
    element("td", item.kind),
    verdict,
    element("td", item.fake_prob === null ? "–" : item.fake_prob.toFixed(2)),
    element("td", `${item.model_name} ${item.model_version}`),
    element("td", item.review ? item.review.label : "–"),
  );
  return row;
}

async function openDetail(predictionId) {
  const box = $("#detail");
  box.replaceChildren();
  try {
    const item = await api(`/predictions/${encodeURIComponent(predictionId)}`);
    const card = $("#result-template").content.firstElementChild.cloneNode(true);
    $(".name", card).textContent = `Prediction ${item.prediction_id}`;
    $(".progress-row", card).hidden = true;
    box.append(card);
    renderAnswer(card, { ...item.result, prediction_id: item.prediction_id }, null);
    $(".review-state", card).textContent = reviewText(item.review);
    if (item.result.explanation && item.result.explanation.grid) {
      const png = await fetch(`/predictions/${encodeURIComponent(predictionId)}/explanation.png`, {
        headers: { "X-API-Key": apiKey() || "" },
      });
      if (png.ok) {
        const figure = $(".where", card);
        $("img", figure).src = URL.createObjectURL(await png.blob());
        $("img", figure).alt = "The stored explanation drawn over the image";
        $("canvas", figure).hidden = true;
        $("figcaption", figure).hidden = true;
        figure.hidden = false;
      }
    }
    if (item.result.receipt) {
      const link = element("a", "Download the signed receipt");
      link.download = `${item.prediction_id}.receipt.jwt`;
      link.href = URL.createObjectURL(new Blob([item.result.receipt], { type: "application/jwt" }));
      card.append(link);
    }
    card.scrollIntoView();
  } catch (error) {
    box.append(element("p", error.message, "message"));
  }
}

// --- receipts ---------------------------------------------------------------------------

async function sha256Hex(file) {
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

async function verifyReceipt(form) {
  const result = $("#receipt-result");
  const claims = $("#receipt-claims");
  result.textContent = "Checking…";
  result.dataset.outcome = "";
  claims.replaceChildren();
  const file = form.elements.file.files[0];
  const body = { receipt: form.elements.receipt.value.trim() };
  if (file) body.input_sha256 = await sha256Hex(file);
  try {
    const check = await api("/receipts/verify", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    let outcome = "signed";
    let text = "Signed by this deployment.";
    if (check.matches_input === true) {
      outcome = "signed-same-file";
      text = "Signed by this deployment, and about this file.";
    } else if (check.matches_input === false) {
      outcome = "signed-other-file";
      text = "Signed by this deployment, but about another file: this file is not the one it judged.";
    }
    result.dataset.outcome = outcome;
    result.textContent = text;
    for (const [name, value] of Object.entries(check.claims)) {
      claims.append(element("dt", name), element("dd", typeof value === "object" ? JSON.stringify(value) : value));
    }
  } catch (error) {
    result.dataset.outcome = "refused";
    result.textContent = `Not a receipt this deployment signed: ${error.message}`;
  }
}

// --- models (admin) ----------------------------------------------------------------------

// A native <dialog>: focus moves into it and Escape cancels, so it is keyboard operable.
function confirmAction(text) {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
  });
}

// The revision of the models' desired state this page's model cards show: what the
// answering replica applied, which is older than the latest while it catches up or when
// the latest fails there. Each change is sent with If-Match on it, so a change decided on
// a stale view (another admin changed the models since) is refused with 409 and the page
// shows the models as they now stand.
let shownRevision = null;

async function loadModels() {
  const box = $("#models");
  $("#models-message").textContent = "";
  try {
    const catalog = await api("/models");
    shownRevision = catalog.models.length
      ? Math.min(...catalog.models.map((model) => model.revision))
      : catalog.revision;
    box.replaceChildren(
      element("p", `Memory: ${megabytes(catalog.memory.used_bytes)} of ${megabytes(catalog.memory.budget_bytes)} held by loaded versions.`),
      replicaTable(catalog),
      ...catalog.models.map(modelCard),
    );
  } catch (error) {
    $("#models-message").textContent = error.message;
  }
}

// Every replica sharing the desired state: which revision it applied, what it serves, and
// whether it is current, still applying, failed (why) or unreachable.
function replicaTable(catalog) {
  const section = element("section", null, "replicas");
  section.setAttribute("aria-label", "Replicas");
  section.append(
    element("h3", `Replicas: revision ${catalog.revision}`),
    element("p", `This page was answered by ${catalog.replica_id || "this replica"}.`),
  );
  if (shownRevision !== null && shownRevision < catalog.revision) {
    section.append(
      element(
        "p",
        `The models below are as this replica applied them (revision ${shownRevision}), not yet the latest; a change made from here is refused until it catches up.`,
        "message",
      ),
    );
  }
  const table = element("table");
  table.id = "replicas";
  const head = element("tr");
  for (const title of ["Replica", "State", "Applied revision", "Serving", "Last heard"]) {
    const cell = element("th", title);
    cell.scope = "col";
    head.append(cell);
  }
  table.append(element("caption", "Replicas and the revision each applied", "visually-hidden"), head);
  for (const replica of catalog.replicas) {
    const row = element("tr");
    row.dataset.replica = replica.replica_id;
    const state = element("td", replica.state, "state");
    if (replica.reason) state.append(element("div", replica.reason, "reason"));
    const serving = Object.entries(replica.serving)
      .map(([model, version]) => `${model} ${version}`)
      .join(", ");
    row.append(
      element("td", replica.replica_id),
      state,
      element("td", replica.applied_revision),
      element("td", serving || "none"),
      element("td", new Date(replica.seen_at).toLocaleString()),
    );
    table.append(row);
  }
  section.append(table);
  return section;
}

function megabytes(bytes) {
  return bytes === null || bytes === undefined ? "–" : `${(bytes / 2 ** 20).toFixed(1)} MB`;
}

async function modelAction(text, path, options = {}) {
  if (!(await confirmAction(text))) return;
  const headers = { ...(options.headers || {}) };
  if (shownRevision !== null) headers["If-Match"] = `"${shownRevision}"`;
  try {
    await api(path, { ...options, headers });
  } catch (error) {
    $("#models-message").textContent = error.message;
  }
  const message = $("#models-message").textContent;
  await loadModels();
  $("#models-message").textContent = message;
}

function modelCard(model) {
  const card = element("article", null, "result model");
  card.dataset.model = model.name;
  const name = encodeURIComponent(model.name);
  card.append(element("h3", `${model.name}${model.default ? " (default)" : ""}`));
  const facts = element("dl", null, "facts");
  const add = (term, value) => facts.append(element("dt", term), element("dd", value));
  add("Serving", model.serving_version || "none");
  add("Previous (a rollback returns to it)", model.previous_version || "none");
  add("Canary", model.canary ? `${model.canary.version}, ${model.canary.percent}% of requests` : "none");
  const tally = model.shadow_agreement;
  add(
    "Shadow",
    model.shadow_version
      ? `${model.shadow_version}: agreed ${tally ? tally.agree : 0}, disagreed ${tally ? tally.disagree : 0}, not scored ${tally ? tally.dropped : 0} (this replica)`
      : "none",
  );
  card.append(facts);

  const table = element("table");
  const head = element("tr");
  for (const title of ["Version", "State", "Role", "Memory", "Actions"]) {
    const cell = element("th", title);
    cell.scope = "col";
    head.append(cell);
  }
  table.append(element("caption", `Versions of ${model.name}`, "visually-hidden"), head);
  for (const version of model.versions) {
    const row = element("tr");
    row.dataset.version = version.version;
    const roles = [];
    if (version.version === model.serving_version) roles.push("serving");
    if (model.canary && version.version === model.canary.version) roles.push("canary");
    if (version.version === model.shadow_version) roles.push("shadow");
    if (version.version === model.previous_version) roles.push("previous");
    const state = element("td", version.state, "state");
    if (version.reason) state.append(element("div", version.reason, "reason"));
    const actions = element("td");
    const button = (label, text, path, options) => {
      const control = element("button", label);
      control.type = "button";
      control.setAttribute("aria-label", `${label} ${model.name} version ${version.version}`);
      control.addEventListener("click", () => modelAction(text, path, options));
      actions.append(control);
    };
    const base = `/admin/models/${name}`;
    const v = encodeURIComponent(version.version);
    if (version.state !== "invalid") {
      if (version.version !== model.serving_version) {
        button("Promote", `Send all of ${model.name}'s traffic to version ${version.version}?`, `${base}/promote`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ version: version.version }),
        });
      }
      if (version.state === "loaded" && !roles.length) {
        button("Unload", `Unload ${model.name} version ${version.version}?`, `${base}/versions/${v}/unload`, { method: "POST" });
      } else if (version.state !== "loaded") {
        button("Load", `Load ${model.name} version ${version.version} into memory?`, `${base}/versions/${v}/load`, { method: "POST" });
      }
    }
    row.append(element("td", version.version), state, element("td", roles.join(", ") || "–"), element("td", megabytes(version.memory_bytes)), actions);
    table.append(row);
  }
  card.append(table);

  if (model.previous_version) {
    const rollback = element("button", `Roll back to ${model.previous_version}`);
    rollback.type = "button";
    rollback.addEventListener("click", () =>
      modelAction(`Roll ${model.name} back to version ${model.previous_version}?`, `/admin/models/${name}/rollback`, { method: "POST" }),
    );
    card.append(rollback);
  }
  card.append(trafficForm(model));
  return card;
}

function trafficForm(model) {
  const form = element("form", null, "filters traffic");
  const usable = model.versions.filter((v) => v.state !== "invalid").map((v) => v.version);
  const select = (label, name, current) => {
    const wrapper = element("label", label);
    const control = element("select");
    control.name = name;
    control.append(element("option", "none"));
    control.options[0].value = "";
    for (const version of usable) control.append(element("option", version));
    control.value = current || "";
    wrapper.append(control);
    return wrapper;
  };
  const percent = element("label", "Canary share (%)");
  const input = element("input");
  Object.assign(input, { type: "number", name: "canary_percent", min: "0", max: "100", step: "1" });
  input.value = model.canary ? String(model.canary.percent) : "0";
  percent.append(input);
  const submit = element("button", "Set traffic");
  submit.type = "submit";
  form.append(
    select("Canary version", "canary_version", model.canary && model.canary.version),
    percent,
    select("Shadow version", "shadow_version", model.shadow_version),
    submit,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = {
      canary_version: form.elements.canary_version.value || null,
      canary_percent: Number(form.elements.canary_percent.value || 0),
      shadow_version: form.elements.shadow_version.value || null,
    };
    const summary = `canary ${body.canary_version || "none"} at ${body.canary_percent}%, shadow ${body.shadow_version || "none"}`;
    modelAction(`Set ${model.name}'s traffic: ${summary}?`, `/admin/models/${encodeURIComponent(model.name)}/traffic`, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  });
  return form;
}

// --- wiring -----------------------------------------------------------------------------

function start() {
  $("#sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("#api-key").value.trim();
    if (!key) {
      $("#sign-in-message").textContent = "Enter your API key.";
      return;
    }
    const result = await signIn(key);
    if (result.ok) signedIn(result.who);
    else $("#sign-in-message").textContent = result.message;
  });
  $("#sign-out").addEventListener("click", () => signOut());
  for (const button of document.querySelectorAll("#nav button")) {
    button.addEventListener("click", () => show(button.dataset.view));
  }
  $("#files").addEventListener("change", (event) => {
    analyse([...event.target.files]);
    event.target.value = "";
  });
  const drop = $("#drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    analyse([...event.dataTransfer.files]);
  });
  document.addEventListener("paste", (event) => {
    if ($("#view-analyse").hidden) return;
    const files = [...event.clipboardData.files];
    if (files.length) analyse(files);
  });
  $("#history-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    loadHistory(true);
  });
  $("#history-more").addEventListener("click", () => loadHistory(false));
  // The review queue: what the model would not decide and nobody has reviewed yet, the
  // longest-waiting first.
  $("#review-queue").addEventListener("click", () => {
    const form = $("#history-filters");
    form.reset();
    form.elements.verdict.value = "inconclusive";
    form.elements.reviewed.value = "false";
    form.elements.order.value = "oldest";
    loadHistory(true);
  });
  $("#receipt-form").addEventListener("submit", (event) => {
    event.preventDefault();
    verifyReceipt(event.target);
  });

  const key = apiKey();
  if (!key) {
    signOut();
    return;
  }
  signIn(key).then((result) => (result.ok ? signedIn(result.who) : signOut(result.message)));
}

start();
