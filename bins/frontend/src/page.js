"use strict";
// The COFRAP sign-in page. It calls the functions on the same origin
// (/function/<name>), keeps the password only in memory for the few steps of
// an enrollment, and shows a message for every error code they can return.

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
  invalid_username: "The username must be 3 to 64 characters, without control characters or ':'.",
  invalid_field: "Check the fields: the password is 1 to 72 characters, the code is the 6 digits of your app.",
  account_exists: "This username is already taken. Choose another one, or sign in.",
  invalid_renewal_token: "The renewal has expired. Sign in again to start it over.",
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

function signedIn(username, text) {
  state.password = "";
  state.renewalToken = null;
  $("done-text").textContent = text.replace("{user}", username);
  say("", false);
  show("done");
}

onSubmit("signin-form", async (form) => {
  say("", false);
  const username = form.username.value.trim();
  const password = form.password.value;
  const answer = await call("authenticate", { username, password, totp_code: form.code.value.replace(/\s/g, "") });
  form.code.value = "";
  if (answer.authenticated === true) {
    form.password.value = "";
    signedIn(answer.username, "Welcome back, {user}.");
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
    signedIn(answer.username, "Your account is active. You are signed in as {user}.");
  } else {
    say(explain(answer), false);
  }
});

$("to-create").addEventListener("click", () => { say("", false); show("create"); });
$("create-back").addEventListener("click", () => { say("", false); show("signin"); });
$("sign-out").addEventListener("click", () => { say("", false); show("signin"); });
