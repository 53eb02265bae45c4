//! The page as a person uses it: the development server started as
//! `make run` starts it, headless Chromium (Debian's) driven through
//! chromedriver, on a real PostgreSQL. Nothing is scanned: the QR images are
//! read from the page and decoded, the first code is computed from the
//! manual key. Screenshots of each step go to target/e2e-screenshots/<test>/.
//! The page's accessibility is checked by axe-core (from npm, installed by
//! `make test` into target/npm), run inside the page at each step.

use cofrap_tests::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long to wait for the page to reach a state (polled, not asserted).
const PATIENCE: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < PATIENCE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The development server of `make run`, on the test database.
struct DevServer {
    process: Child,
    url: String,
}

impl DevServer {
    fn start(functions: &Functions) -> DevServer {
        DevServer::start_with(functions, &[])
    }

    /// With settings of its own (they override stack.yaml's).
    fn start_with(functions: &Functions, settings: &[(&str, &str)]) -> DevServer {
        let exe = std::env::current_exe().unwrap();
        let bin_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let port = free_port();
        let process = Command::new(bin_dir.join("cofrap-dev-server"))
            .current_dir(repo_root())
            .env("PORT", port.to_string())
            .env("BIND", "127.0.0.1")
            .env("SECRETS_DIR", functions.secrets_dir())
            .env("POSTGRES_HOST", &functions.server.host)
            .env("POSTGRES_PORT", functions.server.port.to_string())
            .env("POSTGRES_DB", &functions.dbname)
            .env("BCRYPT_COST", "10")
            .envs(settings.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cofrap-dev-server is missing: build the workspace first");
        let url = format!("http://127.0.0.1:{port}");
        let page = format!("{url}/function/frontend");
        wait_for("the development server", || ureq::get(&page).call().is_ok());
        DevServer { process, url }
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Just enough of the WebDriver protocol (W3C) to use a page: JSON over
/// HTTP to chromedriver.
struct Browser {
    driver: Child,
    session: String,
    profile: PathBuf,
    screenshots: PathBuf,
    shots: usize,
}

impl Browser {
    /// A browser whose person reads English; `name` names its screenshots'
    /// folder.
    fn start(name: &str) -> Browser {
        Browser::start_in(name, "en-US,en")
    }

    /// A browser that sends `accept_language` as its Accept-Language.
    fn start_in(name: &str, accept_language: &str) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is missing: make test installs it (chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        wait_for("chromedriver", || {
            ureq::get(&format!("{base}/status")).call().is_ok()
        });
        let profile = std::env::temp_dir().join(unique("cofrap-chromium-"));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-quic",
                    format!("--accept-lang={accept_language}"),
                    format!("--user-data-dir={}", profile.display()),
                    // A phone's viewport: the page must read well there.
                    "--window-size=412,915",
                ],
            },
        }}});
        let created: Value = ureq::post(&format!("{base}/session"))
            .send_json(&capabilities)
            .expect("chromedriver could not start Chromium")
            .body_mut()
            .read_json()
            .unwrap();
        let session = created["value"]["sessionId"].as_str().unwrap().to_owned();
        let screenshots = repo_root().join("target/e2e-screenshots").join(name);
        let _ = std::fs::remove_dir_all(&screenshots);
        std::fs::create_dir_all(&screenshots).unwrap();
        Browser {
            driver,
            session: format!("{base}/session/{session}"),
            profile,
            screenshots,
            shots: 0,
        }
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let mut response = ureq::post(&format!("{}{path}", self.session))
            .config()
            .http_status_as_error(false)
            .build()
            .send_json(&body)
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        let status = response.status();
        let mut answer = response.body_mut().read_json::<Value>().unwrap();
        assert!(
            status.is_success(),
            "WebDriver {path} {body}: {status} {answer}"
        );
        answer["value"].take()
    }

    fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url }));
    }

    /// Runs JavaScript in the page and returns its result.
    fn eval(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": [] }))
    }

    fn element(&self, css: &str) -> String {
        let found = self.post("/element", json!({ "using": "css selector", "value": css }));
        // The W3C element reference is the one value of the returned object.
        let reference = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str);
        reference
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    /// Empties a field, then types into it as a person would, key by key.
    fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css);
        self.post(&format!("/element/{element}/clear"), json!({}));
        self.keys(css, text);
    }

    /// Sends keys to a field, after what it holds.
    fn keys(&self, css: &str, text: &str) {
        let element = self.element(css);
        self.post(
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        );
    }

    /// Presses Enter in a field: forms are submitted from the keyboard.
    fn press_enter(&self, css: &str) {
        self.keys(css, "\u{E007}");
    }

    fn click(&self, css: &str) {
        let element = self.element(css);
        self.post(&format!("/element/{element}/click"), json!({}));
    }

    fn visible(&self, id: &str) -> bool {
        self.eval(&format!("return !document.getElementById('{id}').hidden")) == Value::Bool(true)
    }

    fn wait_visible(&self, id: &str) {
        wait_for(id, || self.visible(id));
    }

    /// The message the page shows (its alert), once there is one.
    fn message(&self) -> String {
        wait_for("a message", || !self.text("message").is_empty());
        self.text("message")
    }

    /// The id of the element that has the keyboard focus.
    fn focused(&self) -> String {
        self.eval("return document.activeElement.id")
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Presses keys on the keyboard, on whatever has the focus (W3C
    /// actions): `\u{E004}` is Tab, `\u{E007}` Enter.
    fn keyboard(&self, text: &str) {
        let actions: Vec<Value> = text
            .chars()
            .flat_map(|c| {
                let key = c.to_string();
                [
                    json!({"type": "keyDown", "value": key}),
                    json!({"type": "keyUp", "value": key}),
                ]
            })
            .collect();
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        );
    }

    /// Presses Tab until the focus is on `id` (a few presses at most).
    fn tab_to(&self, id: &str) {
        for _ in 0..8 {
            if self.focused() == id {
                return;
            }
            self.keyboard("\u{E004}");
        }
        panic!(
            "Tab never reached {id} (the focus is on {:?})",
            self.focused()
        );
    }

    /// Runs axe-core in the page and fails on any serious or critical
    /// violation (axe's two highest impacts), naming the rule and the
    /// elements.
    fn assert_accessible(&self, step: &str) {
        if self.eval("return typeof axe") != json!("object") {
            let axe = repo_root().join("target/npm/node_modules/axe-core/axe.min.js");
            let source = std::fs::read_to_string(&axe)
                .unwrap_or_else(|e| panic!("{}: {e} (make test installs axe-core)", axe.display()));
            self.eval(&source);
        }
        let violations = self.post(
            "/execute/async",
            json!({"script": "const done = arguments[arguments.length - 1];
                axe.run(document, {resultTypes: ['violations']}).then(
                  (results) => done(results.violations
                    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
                    .map((v) => v.id + ' (' + v.impact + '): ' + v.help + ' at '
                                + v.nodes.map((n) => n.target.join(' ')).join(', '))),
                  (error) => done(['axe failed: ' + error]));",
                "args": []}),
        );
        assert_eq!(violations, json!([]), "accessibility, {step}");
    }

    /// Has the page shown as on a device set to dark mode, or not.
    fn prefer_dark(&self, dark: bool) {
        let scheme = if dark { "dark" } else { "light" };
        self.post(
            "/goog/cdp/execute",
            json!({"cmd": "Emulation.setEmulatedMedia", "params": {
                "features": [{"name": "prefers-color-scheme", "value": scheme}]}}),
        );
    }

    /// The page's language, as its <html lang> says.
    fn language(&self) -> String {
        self.eval("return document.documentElement.lang")
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Checks the step on screen in French, then in English through the
    /// page's switch, then back in French; the focus is put back where the
    /// step left it. `english` is a text the step shows in English.
    fn assert_accessible_in_both_languages(&mut self, step: &str, english: &str) {
        let focused = self.focused();
        assert_eq!(self.language(), "fr");
        self.assert_accessible(&format!("{step}, in French"));
        self.click("#language");
        assert_eq!(self.language(), "en");
        let text = self.eval("return document.getElementById('app').innerText");
        assert!(text.as_str().unwrap().contains(english), "{step}: {text}");
        self.assert_accessible(&format!("{step}, in English"));
        self.click("#language");
        assert_eq!(self.language(), "fr");
        self.eval(&format!("document.getElementById('{focused}').focus()"));
    }

    fn text(&self, id: &str) -> String {
        self.eval(&format!(
            "return document.getElementById('{id}').textContent"
        ))
        .as_str()
        .unwrap()
        .to_owned()
    }

    /// Decodes the QR code an <img> of the page shows.
    fn qr(&self, id: &str) -> String {
        let src = self.eval(&format!("return document.getElementById('{id}').src"));
        let src = src.as_str().unwrap();
        let png = src
            .strip_prefix("data:image/png;base64,")
            .unwrap_or_else(|| panic!("{id} is not an inline PNG: {src:.40}"));
        decode_qr(png)
    }

    /// True when the <img> holds no image data any more.
    fn forgot(&self, id: &str) -> bool {
        self.eval(&format!(
            "return !document.getElementById('{id}').hasAttribute('src')"
        )) == Value::Bool(true)
    }

    /// Neither the DOM nor the page's state holds a QR code, the manual key
    /// or the password.
    fn assert_no_secret_left(&self, password: &str, key: &str) {
        assert!(self.forgot("password-qr") && self.forgot("totp-qr"));
        let html = self
            .eval("return document.documentElement.outerHTML")
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            self.eval("return document.querySelectorAll('img[src], [style*=\"data:\"]').length"),
            json!(0),
            "a QR code is left in the DOM"
        );
        assert!(!html.contains(key), "the manual key is left in the DOM");
        assert_eq!(self.text("manual-key"), "");
        let fields = self.eval(
            "return Array.from(document.querySelectorAll('input')).map(i => i.value).join('')",
        );
        assert!(!fields.as_str().unwrap().contains(password));
        assert_eq!(
            self.eval("return state.password + (state.renewalToken || '')"),
            Value::from(""),
            "the page's memory holds no password"
        );
    }

    fn screenshot(&mut self, step: &str) {
        self.shots += 1;
        let response = ureq::get(&format!("{}/screenshot", self.session))
            .call()
            .unwrap()
            .body_mut()
            .read_json::<Value>()
            .unwrap();
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(response["value"].as_str().unwrap())
            .unwrap();
        let name = format!("{:02}-{step}.png", self.shots);
        std::fs::write(self.screenshots.join(name), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.session).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Goes from the password QR code to an active account; returns the password
/// and the 2FA key.
fn enroll(browser: &mut Browser, label: &str) -> (String, String) {
    browser.wait_visible("password-step");
    assert!(browser
        .text("password-step")
        .contains("Scan it now, it will not be shown again."));
    browser.screenshot(&format!("{label}-password-qr"));
    let password = browser.qr("password-qr");
    assert_eq!(password.chars().count(), 24);

    browser.type_into("#password-typed", &password);
    browser.press_enter("#password-typed");
    browser.wait_visible("totp-step");
    assert!(
        browser.forgot("password-qr"),
        "the password QR code left the DOM once its step was done"
    );
    browser.screenshot(&format!("{label}-2fa-qr"));
    let key = browser.text("manual-key");
    let uri = browser.qr("totp-qr");
    assert!(uri.starts_with("otpauth://totp/COFRAP:"), "{uri}");
    assert!(
        uri.contains(&format!("secret={key}&issuer=COFRAP")),
        "{uri}"
    );

    browser.type_into("#totp-code", &code_at(&key, current_step() * 30));
    browser.press_enter("#totp-code");
    browser.wait_visible("done");
    browser.assert_no_secret_left(&password, &key);
    (password, key)
}

#[test]
fn a_person_creates_an_account_signs_in_and_renews_it() {
    let functions = Functions::new();
    let server = DevServer::start(&functions);
    let mut browser = Browser::start("account");
    let user = unique("Browser User ");
    let user = user.trim();

    browser.goto(&format!("{}/function/frontend", server.url));
    browser.wait_visible("signin");
    browser.screenshot("sign-in");

    // Create the account, enroll, and the first code activates it.
    browser.click("#to-create");
    browser.wait_visible("create");
    browser.type_into("#create-username", user);
    browser.press_enter("#create-username");
    let (password, key) = enroll(&mut browser, "create");
    assert!(browser.text("done-text").contains(&format!(
        "Your account is active. You are signed in as {user}."
    )));
    browser.screenshot("active");

    // A wrong code, and its message.
    browser.click("#sign-out");
    browser.wait_visible("signin");
    browser.assert_no_secret_left(&password, &key);
    browser.type_into("#signin-username", user);
    browser.type_into("#signin-password", &password);
    let wrong = if code_at(&key, (current_step() + 1) * 30) == "000000" {
        "111111"
    } else {
        "000000"
    };
    browser.type_into("#signin-code", wrong);
    browser.press_enter("#signin-code");
    assert_eq!(
        browser.message(),
        "The username, password or code is not valid."
    );
    browser.screenshot("wrong-code");

    // Six months later: signing in leads through the whole renewal.
    functions
        .db()
        .execute(
            "UPDATE users SET created_at = now() - interval '7 months' WHERE username = $1",
            &[&user],
        )
        .unwrap();
    browser.type_into("#signin-password", &password);
    browser.type_into("#signin-code", &code_at(&key, (current_step() + 1) * 30));
    browser.press_enter("#signin-code");
    browser.wait_visible("password-step");
    assert!(browser.text("message").contains("more than six months old"));
    assert!(browser.text("password-intro").contains("Renewal"));
    let (new_password, new_key) = enroll(&mut browser, "renewal");
    assert_ne!(new_password, password);
    assert_ne!(new_key, key);
    assert!(browser.text("done-text").contains("Your account is active"));
    browser.screenshot("renewed");

    let row = functions
        .db()
        .query_one(
            "SELECT activated_at IS NOT NULL, expired, now() - created_at < interval '1 hour'
               FROM users WHERE username = $1",
            &[&user],
        )
        .unwrap();
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2)
        ),
        (true, false, true)
    );
}

#[test]
fn after_an_operator_resets_a_lost_phone_the_page_enrolls_a_new_one() {
    // The runbook's "a phone was lost": the operator resets the account's
    // 2FA; its owner signs in on the page with the password (the code of the
    // lost phone, or anything), is taken to the enrollment step, scans the
    // new QR code, and the first code brings the account back.
    let functions = Functions::new();
    let server = DevServer::start(&functions);
    let mut browser = Browser::start("lost-phone");
    let user = unique("lost-phone-");
    let (password, old_secret) = functions.enrolled_account(&user);
    let step = current_step();
    assert_eq!(
        functions.authenticate(&user, &password, &old_secret, step - 1)["authenticated"],
        true
    );
    let reset = functions.admin(&["reset-2fa", &user]);
    assert_eq!(reset.status, 0, "{reset:?}");

    browser.goto(&format!("{}/function/frontend", server.url));
    browser.wait_visible("signin");
    browser.type_into("#signin-username", &user);
    browser.type_into("#signin-password", &password);
    browser.type_into("#signin-code", &code_at(&old_secret, step * 30));
    browser.press_enter("#signin-code");
    browser.wait_visible("totp-step");
    assert!(browser.message().contains("no authenticator app is set up"));
    let key = browser.text("manual-key");
    assert_ne!(key, old_secret);
    assert!(browser.qr("totp-qr").contains(&format!("secret={key}&")));
    browser.screenshot("new-authenticator");
    browser.type_into("#totp-code", &code_at(&key, current_step() * 30));
    browser.press_enter("#totp-code");
    browser.wait_visible("done");
    browser.assert_no_secret_left(&password, &key);
    // The old phone's codes count for nothing now.
    let old = sign_in(
        &functions,
        &user,
        &password,
        &code_at(&old_secret, (current_step() + 1) * 30),
    );
    assert_eq!(old.json()["code"], "invalid_credentials");
}

/// A narrow no-break space, as French puts before : ? ! ;
const NNBSP: &str = "\u{202F}";

/// The whole flow in French, as the browser's Accept-Language asks, by
/// keyboard alone: each step gets the focus where the next key press goes,
/// announces its messages (the alert), and has no serious or critical axe
/// violation, in French and, through the switch, in English. The switch is
/// remembered (the language only) across a reload.
#[test]
fn a_person_uses_the_page_in_french_by_keyboard_alone() {
    let functions = Functions::new();
    let server = DevServer::start(&functions);
    let mut browser = Browser::start_in("french", "fr-FR,fr;q=0.9,en;q=0.8");
    let user = unique("Utilisatrice ");
    let user = user.trim();
    let page = format!("{}/function/frontend", server.url);

    browser.goto(&page);
    browser.wait_visible("signin");
    assert_eq!(browser.language(), "fr");
    assert_eq!(
        browser.eval("return document.title"),
        json!("Compte COFRAP")
    );
    assert_eq!(browser.text("signin-title"), "Connexion");
    assert_eq!(browser.text("language"), "English");
    // The alert is in the page, empty, before any message: screen readers
    // announce what is then written into it.
    assert_eq!(
        browser.eval(
            "const m = document.getElementById('message');
             return [m.getAttribute('role'), getComputedStyle(m).display !== 'none', m.textContent]"
        ),
        json!(["alert", true, ""])
    );
    assert_eq!(browser.focused(), "signin-username");
    browser.screenshot("sign-in");
    browser.assert_accessible_in_both_languages("sign-in", "Sign in");
    // In dark mode too (checked once: the colours are the same at every step).
    browser.prefer_dark(true);
    browser.screenshot("sign-in-dark");
    browser.assert_accessible("sign-in, dark");
    browser.prefer_dark(false);

    // Account creation, reached with Tab and Enter.
    browser.tab_to("to-create");
    browser.keyboard("\u{E007}");
    browser.wait_visible("create");
    assert_eq!(browser.focused(), "create-username");
    assert_eq!(browser.text("create-title"), "Créer un compte");
    browser.assert_accessible_in_both_languages("create", "Choose a username");
    browser.keyboard(&format!("{user}\u{E007}"));

    // The password QR code: the focus on the step's heading, read first.
    browser.wait_visible("password-step");
    assert_eq!(browser.focused(), "password-title");
    assert_eq!(
        browser.text("password-intro"),
        format!("Compte {user} créé{NNBSP}: voici son mot de passe.")
    );
    browser.screenshot("password-qr");
    browser.assert_accessible_in_both_languages("password-qr", "Scan it now");
    let password = browser.qr("password-qr");
    // A wrong password first: its message, and the focus back in the field.
    browser.tab_to("password-typed");
    browser.keyboard("not the password\u{E007}");
    assert_eq!(
        browser.message(),
        "Ce n’est pas le mot de passe du code QR. Saisissez-le de nouveau, à l’identique."
    );
    assert_eq!(browser.focused(), "password-typed");
    browser.assert_accessible_in_both_languages("wrong-password", "Type it again, exactly");
    assert_eq!(
        browser.eval("return document.getElementById('password-typed').value"),
        json!(""),
        "emptied for a new try"
    );
    browser.keyboard(&format!("{password}\u{E007}"));

    // The 2FA QR code and its manual key, then the first code.
    browser.wait_visible("totp-step");
    assert_eq!(browser.focused(), "totp-title");
    assert_eq!(browser.text("message"), "", "the error is gone");
    browser.screenshot("2fa-qr");
    browser.assert_accessible_in_both_languages("2fa-qr", "Two-factor authentication");
    let key = browser.text("manual-key");
    browser.tab_to("totp-code");
    browser.keyboard(&format!("{}\u{E007}", code_at(&key, current_step() * 30)));
    browser.wait_visible("done");
    assert_eq!(browser.focused(), "done-title");
    assert_eq!(
        browser.text("done-text"),
        format!("Votre compte est activé et votre session est ouverte au nom de {user}.")
    );
    // The end of the session, at a time written the French way (14:05).
    let status = browser.text("session-text");
    let time = status
        .strip_prefix(&format!("Session ouverte au nom de {user} jusqu’à "))
        .and_then(|rest| rest.strip_suffix('.'))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(
        time.len() == 5
            && time.chars().enumerate().all(|(i, c)| if i == 2 {
                c == ':'
            } else {
                c.is_ascii_digit()
            }),
        "{status}"
    );
    browser.screenshot("active");
    browser.assert_accessible_in_both_languages("active", "Your account is active");

    // Sign-out, then a sign-in with a wrong code, then the right one.
    browser.tab_to("sign-out");
    browser.keyboard("\u{E007}");
    browser.wait_visible("signin");
    assert_eq!(browser.message(), "Déconnexion effectuée.");
    assert_eq!(browser.focused(), "signin-username");
    browser.assert_accessible_in_both_languages("signed-out", "You are signed out.");
    let next = (current_step() + 1) * 30;
    let wrong = if code_at(&key, next) == "000000" {
        "111111"
    } else {
        "000000"
    };
    browser.keyboard(&format!("{user}\u{E004}{password}\u{E004}{wrong}\u{E007}"));
    assert_eq!(
        browser.message(),
        "Le nom d’utilisateur, le mot de passe ou le code est incorrect."
    );
    assert_eq!(browser.focused(), "signin-code");
    browser.screenshot("wrong-code");
    browser.assert_accessible_in_both_languages("wrong-code", "The username, password or code");
    browser.keyboard(&format!("{}\u{E007}", code_at(&key, next)));
    browser.wait_visible("done");
    assert_eq!(
        browser.text("done-text"),
        format!("Bon retour parmi nous, {user}.")
    );

    // The switch rewrites the step in place, session included, and is
    // remembered: after a reload the page is in English although the
    // browser asks for French. Only the language is stored.
    browser.click("#language");
    assert_eq!(browser.language(), "en");
    assert_eq!(browser.text("done-text"), format!("Welcome back, {user}."));
    let status = browser.text("session-text");
    assert!(
        status.starts_with(&format!("Signed in as {user} until "))
            && (status.ends_with(" AM.") || status.ends_with(" PM.")),
        "{status}"
    );
    assert_eq!(
        browser
            .eval("return [JSON.stringify(localStorage), sessionStorage.length, document.cookie]"),
        json!(["{\"cofrap-language\":\"en\"}", 0, ""])
    );
    browser.goto(&page);
    browser.wait_visible("signin");
    assert_eq!(browser.language(), "en");
    assert_eq!(
        browser.eval("return document.title"),
        json!("COFRAP account")
    );
    assert_eq!(browser.text("language"), "Français");
    browser.click("#language");
    assert_eq!(browser.text("signin-title"), "Connexion");
    assert_eq!(
        browser.eval("return JSON.stringify(localStorage)"),
        json!("{\"cofrap-language\":\"fr\"}")
    );
}

/// The refresh tokens issued to `user`'s sessions, and how many of them have
/// been exchanged; and the end reasons of the sessions.
fn session_rows(functions: &Functions, user: &str) -> (i64, i64, Vec<Option<String>>) {
    let mut db = functions.db();
    let tokens = db
        .query_one(
            "SELECT count(*), count(rt.rotated_at) FROM refresh_tokens rt
               JOIN sessions s ON s.id = rt.session_id JOIN users u ON u.id = s.user_id
              WHERE u.username = $1",
            &[&user],
        )
        .unwrap();
    (tokens.get(0), tokens.get(1), sessions_of(functions, user))
}

#[test]
fn the_page_keeps_the_session_in_memory_refreshes_it_and_signs_out() {
    let functions = Functions::new();
    // Access tokens of 4 seconds: the page refreshes about every 3.
    let server = DevServer::start_with(&functions, &[("ACCESS_TOKEN_SECONDS", "4")]);
    let user = unique("session-page");
    let (password, secret) = functions.enrolled_account(&user);
    let mut browser = Browser::start("session");

    browser.goto(&format!("{}/function/frontend", server.url));
    browser.wait_visible("signin");
    browser.type_into("#signin-username", &user);
    browser.type_into("#signin-password", &password);
    browser.type_into("#signin-code", &code_at(&secret, current_step() * 30));
    browser.press_enter("#signin-code");
    browser.wait_visible("done");
    let status = browser.text("session-text");
    assert!(
        status.starts_with(&format!("Signed in as {user} until ")),
        "{status}"
    );
    browser.screenshot("session");

    // The page exchanges its refresh token before the access token expires,
    // again and again, with no one touching it.
    wait_for("two refreshes by the page", || {
        session_rows(&functions, &user).1 >= 2
    });
    assert_eq!(session_rows(&functions, &user).2, [None]);
    assert!(browser.visible("done"));
    // In memory only: no storage, no cookie, nothing in the page's text.
    let stored =
        browser.eval("return [localStorage.length, sessionStorage.length, document.cookie.length]");
    assert_eq!(stored, json!([0, 0, 0]));
    let page_text = browser.eval("return document.documentElement.outerHTML");
    assert!(
        !page_text.as_str().unwrap().contains("eyJ"),
        "a JWT in the DOM"
    );

    browser.click("#sign-out");
    browser.wait_visible("signin");
    wait_for("the sign-out", || {
        session_rows(&functions, &user).2 == [Some("signed_out".to_owned())]
    });
    assert_eq!(browser.message(), "You are signed out.");
    assert_eq!(browser.text("session-text"), "");
    browser.screenshot("signed-out");
}

#[test]
fn the_page_is_served_with_its_policy_and_the_server_behaves_like_the_watchdog() {
    let functions = Functions::new();
    let server = DevServer::start(&functions);

    let mut page = ureq::get(&format!("{}/function/frontend", server.url))
        .call()
        .unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.body_mut().read_to_string().unwrap();
    assert!(html.contains("http-equiv=\"Content-Security-Policy\""));
    assert!(html.contains("<html lang=\"en\">"), "English by default");
    // The browser's Accept-Language reaches the page (Http_Accept_Language).
    let french = ureq::get(&format!("{}/function/frontend", server.url))
        .header("Accept-Language", "fr-CH, fr;q=0.9, en;q=0.8")
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(french.contains("<html lang=\"fr\">"));

    // A function's JSON comes back as is, with its content type.
    let mut created = ureq::post(&format!("{}/function/generate-password", server.url))
        .send_json(json!({"username": unique("server")}))
        .unwrap();
    assert_eq!(created.headers()["content-type"], "application/json");
    let body: Value = created.body_mut().read_json().unwrap();
    assert!(body["qr_code_base64"].is_string());

    // Unknown functions are 404; a failing process is 500 with the
    // watchdog's "exit status" line before the function's JSON.
    let unknown = ureq::get(&format!("{}/function/nothing-here", server.url)).call();
    assert!(
        matches!(unknown, Err(ureq::Error::StatusCode(404))),
        "{unknown:?}"
    );

    let refused = ureq::post(&format!("{}/function/authenticate", server.url))
        .config()
        .http_status_as_error(false)
        .build()
        .send_json(json!({"username": "alice", "password": "x", "totp_code": "123456"}));
    // A refusal is an answer: 200, with the function's JSON.
    let mut refused = refused.unwrap();
    assert_eq!(refused.status(), 200);
    let refusal: Value = refused.body_mut().read_json().unwrap();
    assert_eq!(refusal["code"], "invalid_credentials");

    drop(server);
    let misconfigured = Functions::new();
    misconfigured.remove_secret("encryption-key");
    let server = DevServer::start(&misconfigured);
    let mut failed = ureq::post(&format!("{}/function/generate-password", server.url))
        .config()
        .http_status_as_error(false)
        .build()
        .send_json(json!({"username": unique("server")}))
        .unwrap();
    assert_eq!(failed.status(), 500);
    let text = failed.body_mut().read_to_string().unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    assert_eq!(first, "exit status 1");
    let error: Value = serde_json::from_str(rest).unwrap();
    assert_eq!(error["code"], "configuration_error");
}

/// The real classic watchdog (../shared/tools/fwatchdog) in front of the
/// page: it hands the browser's Accept-Language to the function as
/// `Http_Accept_Language`, and the page comes in that language.
#[test]
fn through_the_real_watchdog_the_page_comes_in_the_browsers_language() {
    let watchdog = repo_root().join("../shared/tools/fwatchdog");
    if !watchdog.exists() {
        eprintln!("skipped: {} is missing", watchdog.display());
        return;
    }
    // The 0.2.1 watchdog always opens its metrics port 8081 too.
    assert!(
        std::net::TcpListener::bind("0.0.0.0:8081").is_ok(),
        "port 8081 is taken: the classic watchdog needs it for its metrics"
    );
    let port = free_port();
    let mut child = Command::new(&watchdog)
        .env_clear()
        .env("fprocess", binary("frontend"))
        .env("port", port.to_string())
        .env("content_type", "text/html")
        .env("exec_timeout", "5s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/");
    wait_for("the watchdog", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // The language the page comes in (its <html lang>), or what went wrong.
    let language_served = |accept_language: Option<&str>| -> String {
        let mut request = ureq::get(&url);
        if let Some(value) = accept_language {
            request = request.header("Accept-Language", value);
        }
        match request
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
        {
            Ok(html) => html
                .split("<html lang=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("none")
                .to_owned(),
            Err(e) => e.to_string(),
        }
    };
    let answers = [
        language_served(Some("fr-FR,fr;q=0.9,en;q=0.8")),
        language_served(Some("en-GB,en;q=0.9,fr;q=0.8")),
        language_served(None),
    ];
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answers, ["fr", "en", "en"]);
}

/// The development server on stand-in functions (shell scripts), to check
/// what the watchdog does that the real functions never trigger.
#[test]
fn the_development_server_times_out_limits_and_passes_the_watchdog_environment() {
    let dir = std::env::temp_dir().join(unique("cofrap-stand-ins-"));
    std::fs::create_dir_all(&dir).unwrap();
    let scripts = [
        ("slow", "#!/bin/sh\nsleep 4\necho late\n"),
        (
            "echo",
            "#!/bin/sh\necho \"stderr stays out\" >&2\nenv | grep '^Http_' | sort\ncat\n",
        ),
        (
            "fails",
            "#!/bin/sh\necho '{\"code\": \"internal_error\"}'\nexit 3\n",
        ),
    ];
    for (name, script) in scripts {
        std::fs::write(dir.join(name), script).unwrap();
        Command::new("chmod")
            .arg("+x")
            .arg(dir.join(name))
            .status()
            .unwrap();
    }
    std::fs::write(
        dir.join("stack.yaml"),
        "version: 1.0\nfunctions:\n  slow:\n    environment:\n      exec_timeout: 1s\n      max_inflight: \"1\"\n  \
         echo:\n    environment:\n      content_type: text/plain\n  fails:\n    environment: {}\n",
    )
    .unwrap();
    let exe = std::env::current_exe().unwrap();
    let port = free_port();
    let mut server = Command::new(
        exe.parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("cofrap-dev-server"),
    )
    .env("PORT", port.to_string())
    .env("STACK", dir.join("stack.yaml"))
    .env("BIN_DIR", &dir)
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let url = format!("http://127.0.0.1:{port}/function");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    wait_for("the development server", || {
        agent.get(&format!("{url}/echo")).call().is_ok()
    });

    let mut echoed = agent
        .post(&format!("{url}/echo?a=1"))
        .header("Content-Type", "application/json")
        .send("{\"hello\": 1}")
        .unwrap();
    assert_eq!(echoed.status(), 200);
    assert_eq!(echoed.headers()["content-type"], "text/plain");
    let text = echoed.body_mut().read_to_string().unwrap();
    for line in [
        "Http_Method=POST",
        "Http_Path=/function/echo",
        "Http_Query=a=1",
        "Http_Content_Type=application/json",
        "Http_Content_Length=12",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from {text}"
        );
    }
    assert!(text.ends_with("{\"hello\": 1}"), "{text}");
    assert!(!text.contains("stderr stays out"));
    // A header on two lines: the first, as the watchdog passes it.
    let twice = agent
        .post(&format!("{url}/echo"))
        .header("X-Forwarded-For", "203.0.113.1")
        .header("X-Forwarded-For", "203.0.113.2")
        .send("")
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        twice
            .lines()
            .any(|l| l == "Http_X_Forwarded_For=203.0.113.1"),
        "{twice}"
    );

    let mut failed = agent.post(&format!("{url}/fails")).send("").unwrap();
    assert_eq!(failed.status(), 500);
    assert_eq!(
        failed.body_mut().read_to_string().unwrap(),
        "exit status 3\n{\"code\": \"internal_error\"}\n"
    );

    // Two slow requests at once, one slot: whichever takes it is killed at
    // its 1 s exec_timeout (408), the other is refused at once (429).
    let mut answers: Vec<(u16, String)> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut response = agent.get(&format!("{url}/slow")).call().unwrap();
                    let text = response.body_mut().read_to_string().unwrap();
                    (response.status().as_u16(), text)
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    answers.sort();
    assert_eq!(answers[0], (408, "Killed process.\n".to_owned()));
    assert_eq!(answers[1].0, 429, "{answers:?}");
    assert!(answers[1].1.contains("Max concurrent requests: 1"));
    assert_eq!(
        agent
            .get(&format!("{url}/unknown"))
            .call()
            .unwrap()
            .status(),
        404
    );

    let _ = server.kill();
    let _ = server.wait();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A page of another origin: the development server's 404 for an unknown
/// function, reached as `localhost` while the page lives on `127.0.0.1`
/// (another origin, and another site). It has no policy of ours.
fn another_site(server: &DevServer) -> String {
    server.url.replace("127.0.0.1", "localhost") + "/function/elsewhere"
}

#[test]
fn the_page_refuses_to_work_inside_a_frame() {
    let functions = Functions::new();
    // The page's own defence, for a deployment without the edge: the edge's
    // header would stop the frame before the page runs (next test).
    let server = DevServer::start_with(&functions, &[("EDGE", "")]);
    let browser = Browser::start("frame");
    browser.goto(&another_site(&server));
    let page = format!("{}/function/frontend", server.url);
    browser.eval(&format!(
        "const frame = document.createElement('iframe');
         frame.id = 'victim'; frame.src = '{page}'; frame.width = 400; frame.height = 600;
         document.body.append(frame);"
    ));
    // The first (only) frame of the page.
    browser.post("/frame", json!({"id": 0}));
    wait_for("the framed page", || {
        browser.eval(
            "return document.readyState === 'complete' && !!document.getElementById('framed')",
        ) == Value::Bool(true)
    });
    assert_eq!(
        browser.eval("return [document.getElementById('app'), document.querySelectorAll('input, button, form').length]"),
        json!([null, 0]),
        "nothing usable inside a frame"
    );
    assert!(browser
        .text("framed")
        .contains("cannot be used inside another page"));

    // Not framed, the same page works.
    browser.post("/frame", json!({"id": null}));
    browser.goto(&page);
    browser.wait_visible("signin");
    assert!(browser.visible("app"));
}

#[test]
fn another_site_cannot_make_the_browser_create_an_account() {
    let functions = Functions::new();
    let server = DevServer::start(&functions);
    let browser = Browser::start("csrf");
    // A text/plain POST needs no CORS preflight: the browser sends it, and
    // only the function can refuse it.
    let post = |user: &str| {
        browser.post(
            "/execute/async",
            json!({"script": format!(
                "const done = arguments[arguments.length - 1];
                 fetch('{}/function/generate-password', {{method: 'POST', mode: 'no-cors',
                        headers: {{'Content-Type': 'text/plain'}},
                        body: JSON.stringify({{username: '{user}'}})}})
                   .then(() => done('sent'), (e) => done('failed: ' + e));",
                server.url
            ), "args": []}),
        )
    };
    let exists = |user: &str| -> bool {
        functions
            .db()
            .query_one(
                "SELECT count(*) = 1 FROM users WHERE username = $1",
                &[&user],
            )
            .unwrap()
            .get(0)
    };
    let victim = unique("csrf");
    browser.goto(&another_site(&server));
    assert_eq!(post(&victim), json!("sent"));
    assert!(!exists(&victim), "a cross-site request created an account");

    // The same request from the page's own origin does create it: the
    // refusal above is the function's, not the browser's.
    browser.goto(&format!("{}/function/elsewhere", server.url));
    let own = unique("same-origin");
    assert_eq!(post(&own), json!("sent"));
    assert!(exists(&own));
}

/// The response headers the edge sets (k8s/edge/httproute.yaml), as the
/// browser receives them through the development server, which reads them
/// from that file: on the page, on a JSON answer carrying a password. Then
/// the header alone keeps the page out of a frame, even one of its own
/// origin, and a body over the edge's 1 MiB is refused before any function.
#[test]
fn the_edges_headers_reach_the_browser_and_keep_the_page_out_of_frames() {
    let functions = Functions::new();
    let server = DevServer::start(&functions);
    let browser = Browser::start("edge-headers");
    let page = format!("{}/function/frontend", server.url);
    browser.goto(&page);
    browser.wait_visible("signin");

    let names = [
        "cache-control",
        "x-content-type-options",
        "referrer-policy",
        "content-security-policy",
    ];
    let headers_of = |method: &str, path: &str, body: &str| -> Value {
        browser.post(
            "/execute/async",
            json!({"script": format!(
                "const done = arguments[arguments.length - 1];
                 const init = {{method: '{method}'}};
                 if ('{body}') {{ init.body = '{body}';
                                  init.headers = {{'Content-Type': 'application/json'}}; }}
                 fetch('{path}', init)
                   .then(r => done({{status: r.status, headers: {names:?}
                                       .map(n => r.headers.get(n))}}),
                         e => done('failed: ' + e));"
            ), "args": []}),
        )
    };
    let page_answer = headers_of("GET", "/function/frontend", "");
    assert_eq!(
        page_answer,
        json!({"status": 200, "headers": [
            "no-store", "nosniff", "no-referrer", "frame-ancestors 'none'"]}),
        "the page"
    );
    let user = unique("edge");
    let created = headers_of(
        "POST",
        "/function/generate-password",
        &json!({"username": user}).to_string(),
    );
    assert_eq!(
        created,
        json!({"status": 200, "headers": ["no-store", "nosniff", "no-referrer", null]}),
        "a JSON answer carrying a password"
    );

    // A frame of the page's own origin, in a document of that origin with no
    // policy of its own (the server's 404 for an unknown function): the
    // header stops it, so the frame holds the browser's error page (of no
    // origin of ours), never the page.
    browser.goto(&format!("{}/function/elsewhere", server.url));
    browser.eval(&format!(
        "window.frameLoaded = false;
         const frame = document.createElement('iframe');
         frame.id = 'self-frame'; frame.src = '{page}';
         frame.onload = () => {{ window.frameLoaded = true; }};
         document.body.append(frame);"
    ));
    wait_for("the frame to load", || {
        browser.eval("return window.frameLoaded") == Value::Bool(true)
    });
    assert_eq!(
        browser.eval(
            "const d = document.getElementById('self-frame').contentDocument;
             return d === null ? null : d.querySelectorAll('input, button, #framed').length"
        ),
        Value::Null,
        "the page was framed: the edge's frame-ancestors header is missing"
    );

    // Bodies: over 1 MiB refused by the edge (413); at 1 MiB, the function's.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}/function/generate-password", server.url);
    let too_large = agent.post(&url).send(vec![b' '; (1 << 20) + 1]).unwrap();
    assert_eq!(too_large.status(), 413);
    let mut at_limit = agent.post(&url).send(vec![b' '; 1 << 20]).unwrap();
    assert_eq!(at_limit.status(), 200);
    let refusal: Value = at_limit.body_mut().read_json().unwrap();
    assert_eq!(refusal["code"], "request_too_large");
}

/// stack.yaml's `${NAME:-default}` values, as faas-cli substitutes them:
/// the variable when it is set and not empty, else the default.
#[test]
fn the_development_server_substitutes_stack_variables_like_faas_cli() {
    let dir = std::env::temp_dir().join(unique("cofrap-substitution-"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("env"), "#!/bin/sh\nenv | sort\n").unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(dir.join("env"))
        .status()
        .unwrap();
    std::fs::write(
        dir.join("stack.yaml"),
        "version: 1.0\nfunctions:\n  env:\n    environment:\n      \
         FROM_VARIABLE: ${COFRAP_TEST_GIVEN:-unused}\n      \
         FROM_DEFAULT: ${COFRAP_TEST_UNSET:-the-default}\n      \
         EMPTY_IS_UNSET: ${COFRAP_TEST_EMPTY:-also-default}\n",
    )
    .unwrap();
    let exe = std::env::current_exe().unwrap();
    let port = free_port();
    let mut server = Command::new(
        exe.parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("cofrap-dev-server"),
    )
    .env("PORT", port.to_string())
    .env("STACK", dir.join("stack.yaml"))
    .env("BIN_DIR", &dir)
    .env("COFRAP_TEST_GIVEN", "given")
    .env("COFRAP_TEST_EMPTY", "")
    .env_remove("COFRAP_TEST_UNSET")
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let url = format!("http://127.0.0.1:{port}/function/env");
    wait_for("the development server", || ureq::get(&url).call().is_ok());
    let text = ureq::get(&url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    std::fs::remove_dir_all(&dir).unwrap();
    for line in [
        "FROM_VARIABLE=given",
        "FROM_DEFAULT=the-default",
        "EMPTY_IS_UNSET=also-default",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from {text}"
        );
    }
}
