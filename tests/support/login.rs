//! Logging in through the gateway's form the way a browser would, without a
//! browser: GET the form (binding cookie + CSRF token), POST it.

use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};

/// Value of cookie `name` set by a response.
pub fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    set_cookie_line(resp, name).map(|line| {
        let value = &line[name.len() + 1..];
        value.split(';').next().unwrap_or("").to_string()
    })
}

/// The whole `Set-Cookie` line for cookie `name`.
pub fn set_cookie_line(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

/// The hidden `csrf` field of a gateway form.
pub fn csrf_field(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let at = html.find(marker).expect("csrf field") + marker.len();
    html[at..].split('"').next().expect("value").to_string()
}

/// A login form as a browser holds it: its binding cookie and token.
pub struct LoginForm {
    pub binding: String,
    pub token: String,
}

/// GETs `{base}/.portcullis/login`.
pub async fn login_form(client: &reqwest::Client, base: &str) -> LoginForm {
    let resp = client
        .get(format!("{base}/.portcullis/login?next=/"))
        .send()
        .await
        .expect("login form");
    assert_eq!(resp.status(), 200, "login form");
    let binding = set_cookie(&resp, "__Host-portcullis-csrf").expect("binding cookie");
    let token = csrf_field(&resp.text().await.expect("html"));
    LoginForm { binding, token }
}

/// POSTs the form; `extra_cookie` is sent beside the binding.
pub async fn post_login(
    client: &reqwest::Client,
    base: &str,
    form: &LoginForm,
    user: &str,
    password: &str,
    next: &str,
    extra_cookie: Option<&str>,
) -> reqwest::Response {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf", &form.token)
        .append_pair("username", user)
        .append_pair("password", password)
        .append_pair("next", next)
        .finish();
    let mut cookie = format!("__Host-portcullis-csrf={}", form.binding);
    if let Some(c) = extra_cookie {
        cookie.push_str("; ");
        cookie.push_str(c);
    }
    client
        .post(format!("{base}/.portcullis/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(COOKIE, cookie)
        .body(body)
        .send()
        .await
        .expect("login post")
}

/// Logs in and returns `__Host-portcullis=VALUE`, ready for a `Cookie` header.
pub async fn login(client: &reqwest::Client, base: &str, user: &str, password: &str) -> String {
    let form = login_form(client, base).await;
    let resp = post_login(client, base, &form, user, password, "/", None).await;
    assert_eq!(resp.status(), 303, "login as {user}");
    format!(
        "__Host-portcullis={}",
        set_cookie(&resp, "__Host-portcullis").expect("session cookie")
    )
}

/// Logs out the session in `cookie` (`__Host-portcullis=VALUE`) through the
/// CSRF-protected form; asserts the 303.
pub async fn logout(client: &reqwest::Client, base: &str, cookie: &str) {
    let page = client
        .get(format!("{base}/.portcullis/logout"))
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("logout page");
    let binding = set_cookie(&page, "__Host-portcullis-csrf").expect("binding cookie");
    let token = csrf_field(&page.text().await.expect("html"));
    let resp = client
        .post(format!("{base}/.portcullis/logout"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(
            COOKIE,
            format!("{cookie}; __Host-portcullis-csrf={binding}"),
        )
        .body(format!(
            "csrf={}",
            form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .expect("logout");
    assert_eq!(resp.status(), 303, "logout");
}

/// One attempt at the emergency gate: its form's binding and token, then
/// `secret` (with `X-Forwarded-For: xff` on both requests, when given).
pub async fn emergency_attempt(
    c: &reqwest::Client,
    base: &str,
    secret: &str,
    xff: Option<&str>,
) -> reqwest::Response {
    let mut req = c.get(format!("{base}/.portcullis/emergency"));
    if let Some(ip) = xff {
        req = req.header("x-forwarded-for", ip);
    }
    let page = req.send().await.expect("form");
    assert_eq!(page.status(), 200, "the form");
    let binding = set_cookie(&page, "__Host-portcullis-csrf").expect("binding");
    let token = csrf_field(&page.text().await.expect("html"));
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf", &token)
        .append_pair("secret", secret)
        .finish();
    let mut req = c
        .post(format!("{base}/.portcullis/emergency"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(reqwest::header::ACCEPT, "text/html")
        .header(COOKIE, format!("__Host-portcullis-csrf={binding}"))
        .body(body);
    if let Some(ip) = xff {
        req = req.header("x-forwarded-for", ip);
    }
    req.send().await.expect("post secret")
}

/// Opens the emergency gate with `secret`; returns the emergency cookie
/// (`__Host-portcullis-emergency=…`).
pub async fn emergency_grant(c: &reqwest::Client, base: &str, secret: &str) -> String {
    let page = c
        .get(format!("{base}/.portcullis/emergency"))
        .send()
        .await
        .expect("form");
    assert_eq!(page.status(), 200);
    let binding = set_cookie(&page, "__Host-portcullis-csrf").expect("binding");
    let token = csrf_field(&page.text().await.expect("html"));
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf", &token)
        .append_pair("secret", secret)
        .finish();
    let resp = c
        .post(format!("{base}/.portcullis/emergency"))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(
            reqwest::header::COOKIE,
            format!("__Host-portcullis-csrf={binding}"),
        )
        .body(body)
        .send()
        .await
        .expect("secret");
    assert_eq!(resp.status(), 303, "granted");
    format!(
        "__Host-portcullis-emergency={}",
        set_cookie(&resp, "__Host-portcullis-emergency").expect("cookie")
    )
}

/// Posts one dashboard form (`create-user`, `reset-password`) with a fresh
/// CSRF token, as the emergency session `cookie`.
pub async fn emergency_action(
    c: &reqwest::Client,
    base: &str,
    cookie: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let page = c
        .get(format!("{base}/.portcullis/emergency/dashboard"))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .expect("dashboard");
    assert_eq!(page.status(), 200);
    let binding = set_cookie(&page, "__Host-portcullis-csrf").expect("binding");
    let token = csrf_field(&page.text().await.expect("html"));
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("csrf", &token);
    for (k, v) in fields {
        form.append_pair(k, v);
    }
    c.post(format!("{base}/.portcullis/emergency/{action}"))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(
            reqwest::header::COOKIE,
            format!("{cookie}; __Host-portcullis-csrf={binding}"),
        )
        .body(form.finish())
        .send()
        .await
        .expect("action")
}
