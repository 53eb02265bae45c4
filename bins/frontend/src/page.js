"use strict";
// The COFRAP sign-in page. It calls the functions on the same origin
// (/function/<name>), keeps the password only in memory for the few steps of
// an enrollment, and shows a message for every error code they can return.
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

const MESSAGES = {
  request_too_large: "The request is too large.",
  empty_request: "The request was empty.",
  invalid_utf8: "The request could not be read.",
  invalid_json: "The request could not be read.",
  not_an_object: "The request could not be read.",
  duplicate_field: "The request could not be read.",
  unknown_field: "The request could not be read.",
  missing_field: "Please fill in every field.",
  invalid_field_type: "Please fill in every field.",
  invalid_username: "The username must be 3 to 64 characters in one script (letters, digits, symbols and single spaces), without ':' or invisible characters.",
  invalid_field: "Check the fields: the password is 1 to 72 characters, the code is the 6 digits of your app.",
  account_exists: "This username is already taken. Choose another one, or sign in.",
  invalid_renewal_token: "The renewal has expired. Sign in again to start it over.",
  cross_site_request: "This request came from another web site and was refused. Open the COFRAP page directly.",
  invalid_refresh_token: "Your session has ended. Please sign in again.",
  invalid_credentials: "The username, password or code is not valid.",
  already_enrolled: "Two-factor authentication is already active for this account. Sign in instead.",
  credentials_expired: "Your credentials have expired: sign in to renew them.",
  two_factor_not_enrolled: "Two-factor authentication is not set up yet for this account. Create the account again once its enrollment window has passed, or finish the setup.",
  configuration_error: "The service is misconfigured. Please try again later.",
  database_unavailable: "The service is unavailable. Please try again later.",
  database_timeout: "The service did not answer in time. Please try again in a moment.",
  schema_missing: "The service is not ready yet. Please try again later.",
  schema_outdated: "The service is being upgraded. Please try again later.",
  database_error: "Something went wrong on our side. Please try again.",
  internal_error: "Something went wrong on our side. Please try again.",
  busy: "The service is busy. Please try again in a moment.",
  timeout: "The service took too long to answer. Please try again.",
  unreachable: "The service cannot be reached. Check your connection and try again.",
};

const state = { username: "", password: "", renewalToken: null };
// The open session, if any: { username, accessToken, refreshToken, endsAt, timer }.
let session = null;
const $ = (id) => document.getElementById(id);
const VIEWS = ["signin", "create", "password-step", "totp-step", "done"];

function show(view) {
  for (const id of VIEWS) $(id).hidden = id !== view;
  const field = $(view).querySelector("input");
  (field || $(view).querySelector("button")).focus();
}

function say(text, ok) {
  const message = $("message");
  message.textContent = text;
  message.className = ok ? "ok" : "";
  message.hidden = !text;
}

function explain(answer) {
  return MESSAGES[answer.code] || answer.error || MESSAGES.internal_error;
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
    busy(form, true);
    try {
      await handler(form);
    } finally {
      busy(form, false);
    }
  });
}

function showPassword(answer, intro) {
  state.username = answer.username;
  $("password-intro").textContent = intro;
  $("password-qr").src = "data:image/png;base64," + answer.qr_code_base64;
  $("password-typed").value = "";
  show("password-step");
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

function signedIn(answer, text) {
  forgetSecrets();
  $("done-text").textContent = text.replace("{user}", answer.username);
  say("", false);
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
  const until = session.endsAt.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  $("session-text").textContent = "Signed in as " + session.username + " until " + until + ".";
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
  $("session-text").textContent = "";
}

onSubmit("signin-form", async (form) => {
  say("", false);
  const username = form.username.value.trim();
  const password = form.password.value;
  const answer = await call("authenticate", { username, password, totp_code: form.code.value.replace(/\s/g, "") });
  form.code.value = "";
  if (answer.authenticated === true) {
    form.password.value = "";
    signedIn(answer, "Welcome back, {user}.");
    return;
  }
  if (answer.code === "credentials_expired" && answer.renewal_token) {
    form.password.value = "";
    const renewed = await call("generate-password", { username: answer.username, renewal_token: answer.renewal_token });
    if (renewed.qr_code_base64) {
      say("Your credentials were more than six months old: here are new ones.", true);
      showPassword(renewed, "Renewal for " + renewed.username + ": this is your new password.");
    } else {
      say(explain(renewed), false);
    }
    return;
  }
  say(explain(answer), false);
});

// One request id per account creation, sent again with its retries: if the
// account was created but the answer lost (a database fault), the retry gets
// a password instead of "taken" (README: "a commit whose reply is lost").
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
  say("", false);
  const username = form.username.value.trim();
  const answer = await call("generate-password", { username, request_id: requestId(username) });
  if (answer.qr_code_base64) {
    creation = { username: "", id: "" };
    say("", false);
    showPassword(answer, "Account " + answer.username + " created: this is its password.");
  } else {
    say(explain(answer), false);
  }
});

onSubmit("password-form", async (form) => {
  say("", false);
  state.password = form.password.value;
  const answer = await call("generate-2fa", { username: state.username, password: state.password });
  if (answer.qr_code_2fa_base64) {
    form.password.value = "";
    forgetImage("password-qr");
    $("totp-qr").src = "data:image/png;base64," + answer.qr_code_2fa_base64;
    $("manual-key").textContent = answer.manual_entry_key;
    $("totp-code").value = "";
    show("totp-step");
  } else if (answer.code === "invalid_credentials") {
    say("That is not the password of the QR code. Type it again, exactly.", false);
  } else {
    say(explain(answer), false);
  }
});

onSubmit("totp-form", async (form) => {
  say("", false);
  const answer = await call("authenticate", {
    username: state.username,
    password: state.password,
    totp_code: form.code.value.replace(/\s/g, ""),
  });
  form.code.value = "";
  if (answer.authenticated === true) {
    signedIn(answer, "Your account is active. You are signed in as {user}.");
  } else {
    say(explain(answer), false);
  }
});

$("to-create").addEventListener("click", () => { say("", false); show("create"); });
$("create-back").addEventListener("click", () => { say("", false); show("signin"); });
$("sign-out").addEventListener("click", async () => {
  const ending = session;
  endSession();
  forgetSecrets();
  $("done-text").textContent = "";
  for (const field of document.querySelectorAll("input")) field.value = "";
  say("You are signed out.", true);
  show("signin");
  if (ending) {
    const answer = await call("sign-out", { refresh_token: ending.refreshToken });
    // Only if nothing has been said since: a late answer must not overwrite.
    if (answer.signed_out !== true && $("message").textContent === "You are signed out.") {
      say("The sign-out may not have reached the server: " + explain(answer), false);
    }
  }
});

// Inside a frame the page shows nothing usable: the forms are removed.
if (window.top === window.self) {
  $("app").hidden = false;
  show("signin");
} else {
  $("app").remove();
  const notice = document.createElement("p");
  notice.id = "framed";
  notice.textContent = "This page cannot be used inside another page. Open it directly.";
  document.body.prepend(notice);
}
