"use strict";
// The COFRAP sign-in page. It calls the functions on the same origin
// (/function/<name>), keeps the password only in memory for the few steps of
// an enrollment, and shows a message for every error code they can return,
// in French or English (page-texts.json).
//
// Secrets leave the page as soon as their step is done: the password QR code
// once generate-2fa has accepted the typed password, the 2FA QR code and its
// manual key once the first code is accepted, everything at sign-out (the
// images' data and the texts are removed from the DOM, the variables
// emptied). The page is revealed only when it is not inside a frame: a
// Content-Security-Policy in a meta tag cannot carry frame-ancestors and the
// classic watchdog sends no header of ours, so a framing site (clickjacking)
// gets an empty page instead.
// A sign-in opens a session: its tokens live in this script's memory only
// (never in storage or cookies), the access token is renewed with the
// refresh token before it expires, and signing out ends the session.

// Languages: the page's texts come from the dictionaries of page-texts.json,
// which the server embeds as a data block (it is not run, so the policy's
// script hash stays that of this file). The language is the one the person
// chose with the switch, remembered in this browser's local storage (the one
// thing the page ever stores, and never a secret), else the one the server
// chose from the browser's Accept-Language and wrote in <html lang>.
// Every text on screen is kept as a function of the language, so that the
// switch rewrites them all in place, in the middle of any step.

const state = { username: "", password: "", renewalToken: null };
// The open session, if any: { username, accessToken, refreshToken, endsAt, timer }.
let session = null;
const $ = (id) => document.getElementById(id);

const TEXTS = JSON.parse($("texts").textContent);
const LANGUAGES = Object.keys(TEXTS);
// The key of the chosen language in local storage.
const CHOICE = "cofrap-language";
// The language of the texts on screen: English until one is chosen below.
let language = "en";

function rememberedLanguage() {
  try {
    return localStorage.getItem(CHOICE);
  } catch (_) {
    return null; // storage disabled: the server's choice stands
  }
}

function rememberLanguage(chosen) {
  try {
    if (LANGUAGES.includes(chosen)) localStorage.setItem(CHOICE, chosen);
  } catch (_) {
    // Storage disabled: the choice lasts until the page is left.
  }
}

// The page's text `key` in the current language, its {names} filled in.
function t(key, values = {}) {
  return TEXTS[language].page[key].replace(/\{(\w+)\}/g, (_, name) => values[name]);
}

// The texts written by the script and now on screen: element id -> a
// function giving the text in the current language. They hold names and
// times, never a secret.
const written = new Map();

// Writes a text (a function of the language) into an element, or empties
// it (null).
function write(id, text) {
  if (text) written.set(id, text);
  else written.delete(id);
  render(id, text ? text() : "");
}

// An unchanged text is left alone, so that a live region (the session's
// end, written again at each refresh) is not read out again.
function render(id, value) {
  if ($(id).textContent !== value) $(id).textContent = value;
}

function useLanguage(chosen) {
  language = chosen;
  document.documentElement.lang = chosen;
  for (const element of document.querySelectorAll("[data-text]")) element.textContent = t(element.dataset.text);
  for (const image of document.querySelectorAll("[data-alt]")) image.alt = t(image.dataset.alt);
  for (const [id, text] of written) render(id, text());
  // The switch offers the other language, named in that language.
  const other = LANGUAGES.find((name) => name !== chosen);
  $("language").textContent = TEXTS[other].name;
  $("language").lang = other;
}

// Where the focus goes when a view appears: the field to fill in, or, for a
// step that first shows something to read (a QR code, a result), its
// heading, so that a screen reader reads the step from its start.
const FOCUS = {
  signin: "signin-username",
  create: "create-username",
  "password-step": "password-title",
  "totp-step": "totp-title",
  done: "done-title",
};

function show(view) {
  for (const id of Object.keys(FOCUS)) $(id).hidden = id !== view;
  $(FOCUS[view]).focus();
}

// Shows a message (a function of the language; null: none), which the
// alert role has screen readers announce.
function say(text, ok) {
  write("message", text);
  $("message").className = ok ? "ok" : "";
}

// The message for a function's answer. It keeps the code and the function's
// own text (for a code the page does not know) but not the answer, which
// may hold a token.
function explain(answer) {
  const { code, error } = answer;
  return () => {
    const messages = TEXTS[language].codes;
    return Object.hasOwn(messages, code) ? messages[code] : error || messages.internal_error;
  };
}

// Calls a function. The watchdog answers 200 with the function's JSON, 500
// with "exit status N" and then the JSON, 408 on a timeout, 429 when busy.
async function call(name, body) {
  let response;
  try {
    response = await fetch("/function/" + name, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (_) {
    return { code: "unreachable" };
  }
  if (response.status === 408) return { code: "timeout" };
  if (response.status === 429) return { code: "busy" };
  const text = await response.text();
  try {
    return JSON.parse(text.slice(text.indexOf("{")));
  } catch (_) {
    return { code: "unreachable" };
  }
}

function busy(form, yes) {
  for (const element of form.elements) element.disabled = yes;
}

function onSubmit(id, handler) {
  $(id).addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    // Disabling the form while it is sent takes the focus away: it is given
    // back if the form is still shown (a refusal), so that the keyboard
    // stays where the person was typing.
    const focused = document.activeElement;
    busy(form, true);
    try {
      await handler(form);
    } finally {
      busy(form, false);
      if (!form.closest("section").hidden && form.contains(focused)) focused.focus();
    }
  });
}

function showPassword(answer, intro) {
  const user = answer.username;
  state.username = user;
  $("password-form").username.value = user;
  write("password-intro", () => t(intro, { user }));
  $("password-qr").src = "data:image/png;base64," + answer.qr_code_base64;
  $("password-typed").value = "";
  show("password-step");
}

// Shows generate-2fa's QR code and key, and asks for the first code.
function showTotp(answer) {
  $("totp-qr").src = "data:image/png;base64," + answer.qr_code_2fa_base64;
  $("manual-key").textContent = answer.manual_entry_key;
  $("totp-code").value = "";
  show("totp-step");
}

// Removes a QR code's image data from the DOM.
function forgetImage(id) {
  $(id).removeAttribute("src");
}

// Forgets every secret an enrollment showed or kept.
function forgetSecrets() {
  forgetImage("password-qr");
  forgetImage("totp-qr");
  $("manual-key").textContent = "";
  $("password-typed").value = "";
  $("totp-code").value = "";
  state.password = "";
  state.renewalToken = null;
}

function signedIn(answer, greeting) {
  forgetSecrets();
  const user = answer.username;
  write("done-text", () => t(greeting, { user }));
  say(null);
  keepSession(answer);
  show("done");
}

// Takes the tokens of a sign-in or a refresh, says until when the session
// lasts, and plans the next refresh: a minute before the access token
// expires (a quarter of its life for short ones).
function keepSession(answer) {
  if (session) clearTimeout(session.timer);
  const now = Date.now();
  session = {
    username: answer.username,
    accessToken: answer.access_token,
    refreshToken: answer.refresh_token,
    endsAt: new Date(now + answer.refresh_expires_in * 1000),
  };
  const { username: user, endsAt } = session;
  write("session-text", () => {
    const time = endsAt.toLocaleTimeString(language, { hour: "2-digit", minute: "2-digit" });
    return t("session", { user, time });
  });
  const lead = Math.min(60, answer.expires_in / 4);
  session.timer = setTimeout(renewSession, Math.max(1, answer.expires_in - lead) * 1000);
}

async function renewSession() {
  if (!session) return;
  const current = session;
  const answer = await call("refresh", { refresh_token: current.refreshToken });
  if (session !== current) return; // signed out meanwhile
  if (answer.access_token) {
    keepSession(answer);
  } else if (answer.code === "busy" && Date.now() < current.endsAt) {
    // Only a refusal before the function ran (429) is retried: after a
    // timeout or a lost answer the token may have been exchanged, and
    // sending it again would end the session as a reuse.
    current.timer = setTimeout(renewSession, 5000);
  } else {
    endSession();
    say(explain(answer.code === "invalid_refresh_token" ? answer : { code: "invalid_refresh_token" }), false);
    show("signin");
  }
}

// Forgets the session's tokens.
function endSession() {
  if (session) clearTimeout(session.timer);
  session = null;
  write("session-text", null);
}

onSubmit("signin-form", async (form) => {
  say(null);
  const username = form.username.value.trim();
  const password = form.password.value;
  const answer = await call("authenticate", { username, password, totp_code: form.code.value.replace(/\s/g, "") });
  form.code.value = "";
  if (answer.authenticated === true) {
    form.password.value = "";
    signedIn(answer, "welcome_back");
    return;
  }
  if (answer.code === "two_factor_not_enrolled") {
    // The password is right but no authenticator is set up: a new account
    // whose owner left before that step, or an operator reset a lost
    // phone's. Set one up now, with the password just typed.
    form.password.value = "";
    state.username = username;
    state.password = password;
    const enrolled = await call("generate-2fa", { username, password });
    if (enrolled.qr_code_2fa_base64) {
      say(() => t("enroll_now"), true);
      showTotp(enrolled);
    } else {
      // generate-2fa refuses like a wrong password, but the password was
      // right: the time to set up 2FA has passed.
      state.password = "";
      say(explain(enrolled.code === "invalid_credentials" ? answer : enrolled), false);
    }
    return;
  }
  if (answer.code === "credentials_expired" && answer.renewal_token) {
    form.password.value = "";
    const renewed = await call("generate-password", { username: answer.username, renewal_token: answer.renewal_token });
    if (renewed.qr_code_base64) {
      say(() => t("renewed"), true);
      showPassword(renewed, "renewal");
    } else {
      say(explain(renewed), false);
    }
    return;
  }
  say(explain(answer), false);
});

// One request id per account creation, sent again with its retries: if the
// account was created but the answer lost (a database fault), the retry gets
// a password instead of "taken" (docs/API.md: "a commit whose reply is lost").
let creation = { username: "", id: "" };
function requestId(username) {
  if (creation.username !== username) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    const base64 = btoa(String.fromCharCode(...bytes));
    const id = base64.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    creation = { username, id };
  }
  return creation.id;
}

onSubmit("create-form", async (form) => {
  say(null);
  const username = form.username.value.trim();
  const answer = await call("generate-password", { username, request_id: requestId(username) });
  if (answer.qr_code_base64) {
    creation = { username: "", id: "" };
    showPassword(answer, "created");
  } else {
    say(explain(answer), false);
  }
});

onSubmit("password-form", async (form) => {
  say(null);
  state.password = form.password.value;
  const answer = await call("generate-2fa", { username: state.username, password: state.password });
  if (answer.qr_code_2fa_base64) {
    form.password.value = "";
    forgetImage("password-qr");
    showTotp(answer);
  } else if (answer.code === "invalid_credentials") {
    form.password.value = "";
    say(() => t("not_that_password"), false);
  } else {
    say(explain(answer), false);
  }
});

onSubmit("totp-form", async (form) => {
  say(null);
  const answer = await call("authenticate", {
    username: state.username,
    password: state.password,
    totp_code: form.code.value.replace(/\s/g, ""),
  });
  form.code.value = "";
  if (answer.authenticated === true) {
    signedIn(answer, "activated");
  } else {
    say(explain(answer), false);
  }
});

$("to-create").addEventListener("click", () => { say(null); show("create"); });
$("create-back").addEventListener("click", () => { say(null); show("signin"); });
$("sign-out").addEventListener("click", async () => {
  const ending = session;
  endSession();
  forgetSecrets();
  write("done-text", null);
  for (const field of document.querySelectorAll("input")) field.value = "";
  const farewell = () => t("signed_out");
  say(farewell, true);
  show("signin");
  if (ending) {
    const answer = await call("sign-out", { refresh_token: ending.refreshToken });
    // Only if nothing has been said since: a late answer must not overwrite.
    if (answer.signed_out !== true && written.get("message") === farewell) {
      const reason = explain(answer);
      say(() => t("sign_out_unsure", { reason: reason() }), false);
    }
  }
});

$("language").addEventListener("click", () => {
  const other = LANGUAGES.find((name) => name !== language);
  rememberLanguage(other);
  useLanguage(other);
});

// The person's choice if any, else the server's (from Accept-Language).
const remembered = rememberedLanguage();
const served = document.documentElement.lang;
useLanguage(LANGUAGES.includes(remembered) ? remembered : LANGUAGES.includes(served) ? served : "en");

// Inside a frame the page shows nothing usable: the forms are removed.
if (window.top === window.self) {
  $("app").hidden = false;
  show("signin");
} else {
  $("app").remove();
  const notice = document.createElement("p");
  notice.id = "framed";
  notice.textContent = t("framed");
  document.body.prepend(notice);
}
