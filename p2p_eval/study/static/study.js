// Participant page of the p2p-eval perceptual study (plain JS, no build step).
// Images are fetched and decoded (img.decode()) before a trial starts, then shown and hidden on
// requestAnimationFrame; the rAF timestamps of the frames that showed / hid them (performance.now()
// clock), the frame interval measured before the trial (median rAF delta) and the response time are posted
// with the answer.  hype-time: the server gives each trial's exposure (display_ms) and a noise mask follows
// the image (mask_ms; its onset / offset are posted too); hype-inf: the image stays until the answer.
// A study with a consent text shows it before the instructions and opens a session only after "I agree"
// (posted as consent: true); a closed or full study (410) gets its own page instead of the instructions.
// All text from the server or the URL is written with textContent, never parsed as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SECTIONS = ["consent", "instructions", "trial", "feedback", "done", "error"];
  const ASSUMED_FRAME = 1000 / 60;
  const SINGLE_IMAGE = ["single", "hype-time", "hype-inf"];
  let shown = null;  // hype-inf: the image on screen until the answer
  const params = new URLSearchParams(location.search);
  const studyName = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
  const apiBase = "/api/studies/" + encodeURIComponent(studyName);
  let state = null;
  let consented = false;

  function show(section) {
    for (const id of SECTIONS) $(id).hidden = id !== section;
  }

  function fail(message, title) {
    $("error-title").textContent = title || "Something went wrong";
    $("error-text").textContent = message;
    show("error");
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));

  // JSON request; network errors and 5xx are retried (answers are idempotent on the server).
  async function api(method, url, body) {
    for (let attempt = 0; ; attempt++) {
      try {
        const response = await fetch(url, {
          method,
          headers: body ? { "Content-Type": "application/json" } : {},
          body: body ? JSON.stringify(body) : undefined,
        });
        if (response.status >= 500 && attempt < 6) throw new Error("server error " + response.status);
        const data = await response.json().catch(() => ({}));
        return { status: response.status, data };
      } catch (err) {
        if (attempt >= 6) throw err;
        await sleep(250 * 2 ** attempt);
      }
    }
  }

  function describe(info) {
    const word = info.question === "real" ? "real" : "fake";
    if (info.protocol === "2afc") {
      return "In each trial two images appear side by side for a moment: one is a photograph, the other is fake. " +
        "Click the button under the image you think is " + word + ".";
    }
    if (info.protocol === "sequential") {
      return "In each trial two images appear one after the other: one is a photograph, the other is fake. " +
        "Then say which one you think is " + word + ": the first or the second.";
    }
    if (info.protocol === "hype-time") {
      return "In each trial one image flashes up very briefly" + (info.mask_ms ? ", followed by a pattern of noise" : "") +
        ". It is either a photograph or fake (50/50). Then say whether you think it was real or fake. " +
        "Keep your eyes on the cross in the middle of the grey square: the image appears there.";
    }
    if (info.protocol === "hype-inf") {
      return "In each trial one image appears and stays until you answer. It is either a photograph or fake " +
        "(50/50). Take your time, then say whether you think it is real or fake.";
    }
    return "In each trial one image appears for a moment. It is either a photograph or fake (50/50). " +
      "Then say whether you think it was real or fake.";
  }

  const storeKey = "p2p-study-anon:" + studyName;

  function arrival() {
    const body = { screen_w: screen.width, screen_h: screen.height, anon_id: localStorage.getItem(storeKey) };
    if (consented) body.consent = true;
    for (const key of ["workerId", "assignmentId", "hitId", "PROLIFIC_PID", "STUDY_ID", "SESSION_ID"]) {
      if (params.get(key)) body[key] = params.get(key);
    }
    return body;
  }

  // Before the instructions: a second session of the same participant is refused here, a finished one goes
  // straight to its completion code, an unfinished one is told that it resumes where it stopped.
  async function init() {
    const { status, data } = await api("GET", apiBase);
    if (status !== 200) return fail(data.detail || "This study does not exist.");
    $("how").textContent = describe(data);
    if (data.instructions) {
      $("lab-text").textContent = data.instructions;
      $("lab-text").hidden = false;
    }
    if (data.protocol === "hype-inf") {
      $("brief-note").textContent = "Each image stays on screen until you answer. Look as long as you like.";
    }
    $("practice-note").hidden = !data.practice;
    if (data.answer_ms) {
      $("time-note").textContent = "You have " + data.answer_ms / 1000 + " seconds to answer each time; " +
        "no answer in time counts as a miss. Go with your first impression.";
    }
    if (params.get("assignmentId") === "ASSIGNMENT_ID_NOT_AVAILABLE") {
      show("instructions");
      $("preview-note").hidden = false;
      $("start").hidden = true;
      return;
    }
    const check = await api("POST", apiBase + "/check", arrival());
    if (check.status === 409) {
      return fail((check.data.detail || "You have already taken part in this study.") +
        " Thank you: there is nothing more to do here.", "You have already taken part");
    }
    if (check.status === 410) return unavailable(check.data);
    if (check.status !== 200) return fail(check.data.detail || "Could not open the study.");
    if (check.data.status === "done") return start();
    if (check.data.status === "resume") {
      const i = check.data.next_index, practice = check.data.practice;
      const where = i < practice ? "practice trial " + (i + 1) + " of " + practice
        : "trial " + (i - practice + 1) + " of " + (check.data.total - practice);
      $("resume-note").textContent = "Welcome back: you are resuming where you stopped, at " + where +
        ". Your earlier answers are saved.";
      $("resume-note").hidden = false;
      $("start").textContent = "Continue";
    }
    $("start").addEventListener("click", start, { once: true });
    if (check.data.status === "new" && data.consent) return askConsent(data.consent);
    show("instructions");
  }

  function unavailable(data) {
    fail(data.detail || "This study takes no new participants.",
      data.reason === "full" ? "This study is full" : "This study is closed");
  }

  function askConsent(text) {
    $("consent-text").textContent = text;
    show("consent");
    $("agree").addEventListener("click", () => { consented = true; show("instructions"); }, { once: true });
    $("decline").addEventListener("click", () => fail("You did not agree, so you have not joined the study and " +
      "nothing was recorded. You may close this page.", "You have not joined the study"), { once: true });
  }

  async function start() {
    $("start").disabled = true;
    const body = arrival();
    const { status, data } = await api("POST", apiBase + "/sessions", body);
    if (status === 410) return unavailable(data);
    if (status !== 200) return fail(data.detail || "Could not start the study.");
    state = data;
    if (!body.workerId && !body.PROLIFIC_PID) localStorage.setItem(storeKey, data.participant);
    if (data.done) return finish(data);
    runTrial(data.next_index);
  }

  // The server skips a trial whose image it cannot serve, so the trial it answers with may come later than
  // ``index`` (or the session may be complete).  An image that fails in the browser is fetched once more.
  async function runTrial(index, attempt = 0) {
    const { status, data } = await api("GET", "/api/s/" + state.session + "/trial/" + index);
    if (status !== 200) return fail(data.detail || "Could not load the next trial.");
    if (data.done) return finish(data);
    index = data.index;
    const images = data.images.map((url) => { const img = new Image(); img.src = url; img.alt = ""; return img; });
    try {
      await Promise.all(images.map((img) => img.decode()));
    } catch (err) {
      if (attempt < 1) { await sleep(500); return runTrial(index, attempt + 1); }
      return fail("An image could not be loaded. Please check your connection and reload the page; " +
        "you will continue where you stopped.");
    }
    $("progress").textContent = data.practice
      ? "Practice " + (index + 1) + " of " + state.practice
      : "Trial " + (index - state.practice + 1) + " of " + (state.total - state.practice);
    const stage = $("stage");
    stage.replaceChildren();
    $("question").textContent = "";
    $("answers").replaceChildren();
    const mask = data.mask_ms ? noiseMask() : null;
    const boxes = (state.protocol === "2afc" ? images : [images[0]]).map(() => {
      const box = document.createElement("div");
      box.className = "box";
      stage.appendChild(box);
      return box;
    });
    if (state.protocol === "2afc") images.forEach((img, i) => boxes[i].appendChild(img));
    else boxes[0].appendChild(images[0]);
    show("trial");
    if (state.protocol === "hype-time") boxes[0].classList.add("fixation");
    const frameMs = await measureFrame(500);  // the 500 ms before each trial: frame interval of this screen
    boxes[0].classList.remove("fixation");
    const displayMs = data.display_ms === undefined ? state.display_ms : data.display_ms;
    const timing = displayMs === null
      ? await presentUntilAnswer(images[0])
      : await present(images, boxes[0], displayMs, frameMs, mask, data.mask_ms);
    timing.frame_ms = frameMs;
    ask(index, timing);
  }

  // Median requestAnimationFrame delta over ``ms`` milliseconds (the display's frame interval).
  async function measureFrame(ms) {
    const start = await frame();
    const deltas = [];
    for (let prev = start; ;) {
      const t = await frame();
      deltas.push(t - prev);
      prev = t;
      if (t - start >= ms && deltas.length >= 3) break;
    }
    deltas.sort((a, b) => a - b);
    const median = deltas[Math.floor(deltas.length / 2)];
    return median > 0 && median < 100 ? median : ASSUMED_FRAME;
  }

  // A 256 x 256 canvas of uniform RGB noise, drawn before the trial (hype-time's mask).
  function noiseMask() {
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 256;
    canvas.className = "mask";
    const ctx = canvas.getContext("2d");
    const pixels = ctx.createImageData(256, 256);
    for (let i = 0; i < pixels.data.length; i += 4) {
      pixels.data[i] = Math.random() * 256;
      pixels.data[i + 1] = Math.random() * 256;
      pixels.data[i + 2] = Math.random() * 256;
      pixels.data[i + 3] = 255;
    }
    ctx.putImageData(pixels, 0, 0);
    return canvas;
  }

  // Show on one animation frame, hide on the first frame at least ``ms`` (minus half a frame) later.
  async function hold(onset, ms, frameMs) {
    for (;;) {
      const t = await frame();
      if (t - onset >= ms - frameMs / 2) return t;
    }
  }

  // hype-inf: the image is shown on one frame and stays until the answer (submit hides it).
  async function presentUntilAnswer(img) {
    await frame();
    const onset = await frame();
    img.style.visibility = "visible";
    shown = img;
    return { onset1: onset, hiddenAt: onset };
  }

  async function present(images, box, displayMs, frameMs, mask, maskMs) {
    const timing = {};
    await frame();
    if (state.protocol === "2afc") {
      const onset = await frame();
      images.forEach((img) => { img.style.visibility = "visible"; });
      const offset = await hold(onset, displayMs, frameMs);
      images.forEach((img) => { img.style.visibility = "hidden"; });
      Object.assign(timing, { onset1: onset, offset1: offset, onset2: onset, offset2: offset });
    } else {
      let onset = await frame();
      images[0].style.visibility = "visible";
      let offset = await hold(onset, displayMs, frameMs);
      images[0].style.visibility = "hidden";
      Object.assign(timing, { onset1: onset, offset1: offset });
      if (mask) {  // hype-time: the noise mask replaces the image on the same frame
        box.replaceChildren(mask);
        mask.style.visibility = "visible";
        const maskOffset = await hold(offset, maskMs, frameMs);
        mask.style.visibility = "hidden";
        Object.assign(timing, { mask_onset: offset, mask_offset: maskOffset, hiddenAt: maskOffset });
        return timing;
      }
      if (images.length > 1) {  // sequential: the second image replaces the first on the same frame
        box.replaceChildren(images[1]);
        images[1].style.visibility = "visible";
        onset = offset;
        offset = await hold(onset, displayMs, frameMs);
        images[1].style.visibility = "hidden";
        Object.assign(timing, { onset2: onset, offset2: offset });
      }
    }
    timing.hiddenAt = state.protocol === "2afc" || images.length === 1 ? timing.offset1 : timing.offset2;
    return timing;
  }

  function ask(index, timing) {
    const word = state.question === "real" ? "real" : "fake";
    let choices;
    if (state.protocol === "2afc") {
      $("question").textContent = "Which image was " + word + "?";
      choices = [["1", "Left was " + word], ["2", "Right was " + word]];
    } else if (state.protocol === "sequential") {
      $("question").textContent = "Which image was " + word + "?";
      choices = [["1", "First was " + word], ["2", "Second was " + word]];
    } else {
      $("question").textContent = "Was the image real or fake?";
      choices = [["real", "Real"], ["fake", "Fake"]];
    }
    const buttons = choices.map(([value, label]) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      button.dataset.answer = value;
      button.addEventListener("click", () => submit(index, value, timing, buttons), { once: true });
      $("answers").appendChild(button);
      return button;
    });
    if (state.answer_ms) {  // the study's answer window: no click in time is posted as "missed"
      const timer = setTimeout(() => submit(index, "missed", timing, buttons), state.answer_ms);
      buttons.forEach((b) => b.addEventListener("click", () => clearTimeout(timer), { once: true }));
    }
  }

  async function submit(index, value, timing, buttons) {
    const responseMs = performance.now() - timing.hiddenAt;
    buttons.forEach((b) => { b.disabled = true; });
    if (shown) {  // hype-inf: hide the image now; its offset is the frame that hid it
      shown.style.visibility = "hidden";
      shown = null;
      timing.offset1 = await frame();
    }
    const body = { index, answer: value, response_ms: responseMs };
    for (const key of ["onset1", "offset1", "onset2", "offset2", "frame_ms", "mask_onset", "mask_offset"]) {
      if (key in timing) body[key] = timing[key];
    }
    let reply;
    try {
      reply = await api("POST", "/api/s/" + state.session + "/answer", body);
    } catch (err) {
      return fail("The connection was lost. Please reload the page to continue where you stopped.");
    }
    if (reply.status !== 200) return fail(reply.data.detail || "The answer was not accepted. Please reload the page.");
    const ack = reply.data;
    const next = () => (ack.done ? finish(ack) : runTrial(ack.next_index));
    if (ack.feedback) return feedback(ack.feedback, next);
    next();
  }

  function feedback(fb, next) {
    const title = $("feedback-title");
    title.textContent = fb.correct ? "Correct!" : "Not quite.";
    title.className = fb.correct ? "right" : "wrong";
    let text;
    if (SINGLE_IMAGE.includes(state.protocol)) text = "That image was " + fb.truth + ".";
    else {
      const names = state.protocol === "2afc" ? ["left", "right"] : ["first", "second"];
      text = "The fake image was the " + names[fb.fake_slot - 1] + " one.";
    }
    $("feedback-text").textContent = text;
    show("feedback");
    const button = $("continue");
    const handler = () => { button.removeEventListener("click", handler); next(); };
    button.addEventListener("click", handler);
  }

  function codeUse(source, mturkForm, redirect) {
    if (source === "mturk") {
      return mturkForm ? "Click \u201cSubmit the HIT\u201d below to send it to Mechanical Turk (or copy it into the HIT)."
        : "Copy this code, paste it into the HIT on Mechanical Turk, and submit the HIT to get paid.";
    }
    if (source === "prolific") {
      return "Copy this code and paste it into Prolific to confirm that you completed the study" +
        (redirect ? "; you will also be sent back to Prolific automatically." : ".");
    }
    return "Copy this code and give it to the person who invited you to this study (for example, paste it into " +
      "the survey or message that brought you here): it shows that you finished.";
  }

  async function copyCode() {
    const code = $("code").textContent;
    try {
      await navigator.clipboard.writeText(code);
      $("copy-status").textContent = "Copied.";
    } catch (err) {  // no clipboard access (e.g. plain http): select the code for the participant to copy
      const range = document.createRange();
      range.selectNodeContents($("code"));
      const selection = getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      $("copy-status").textContent = "Selected: press Ctrl+C (Cmd+C on a Mac) to copy.";
    }
  }

  function finish(result) {
    $("code").textContent = result.completion_code;
    $("participant").textContent = state ? "Participant: " + state.participant : "";
    $("copy").addEventListener("click", copyCode);
    show("done");
    const submitTo = params.get("turkSubmitTo");
    const mturkForm = Boolean(submitTo && /^https:\/\//.test(submitTo) && params.get("assignmentId"));
    $("code-use").textContent = codeUse(state ? state.source : "anon", mturkForm, Boolean(result.redirect_url));
    if (mturkForm) {
      const form = $("mturk-form");
      form.action = submitTo.replace(/\/$/, "") + "/mturk/externalSubmit";
      for (const [name, value] of [["assignmentId", params.get("assignmentId")], ["completion_code", result.completion_code]]) {
        const input = document.createElement("input");
        input.type = "hidden";
        input.name = name;
        input.value = value;
        form.appendChild(input);
      }
      form.hidden = false;
    }
    if (result.redirect_url) {
      let url;
      try { url = new URL(result.redirect_url); } catch (err) { return; }
      if (url.protocol !== "https:" && url.protocol !== "http:") return;
      $("redirect-link").href = url.href;
      $("redirect-note").hidden = false;
      setTimeout(() => location.assign(url.href), 4000);
    }
  }

  init().catch((err) => fail(String(err)));
})();
