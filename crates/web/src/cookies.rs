//! The two cookies: the HttpOnly session cookie and the readable CSRF cookie.

use axum::http::HeaderMap;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderValue, header};

/// Cookie names; `__Host-` prefixed (and `Secure`) over HTTPS. On plain-HTTP
/// development origins the prefix is dropped, because browsers refuse
/// `__Host-` cookies without `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieNames {
    pub session: &'static str,
    pub csrf: &'static str,
    pub secure: bool,
}

impl CookieNames {
    pub fn for_origin(secure: bool) -> Self {
        if secure {
            Self {
                session: "__Host-vellum-session",
                csrf: "__Host-vellum-csrf",
                secure,
            }
        } else {
            Self {
                session: "vellum-session",
                csrf: "vellum-csrf",
                secure,
            }
        }
    }

    fn attrs(&self) -> &'static str {
        if self.secure {
            "; Path=/; SameSite=Lax; Secure"
        } else {
            "; Path=/; SameSite=Lax"
        }
    }

    /// `Set-Cookie` for a new session: the session token HttpOnly, the CSRF
    /// token readable by the page's script.
    pub fn set_both(&self, headers: &mut HeaderMap, session: &str, csrf: &str) {
        self.set(
            headers,
            &format!("{}={session}{}; HttpOnly", self.session, self.attrs()),
        );
        self.set_csrf(headers, csrf);
    }

    pub fn set_csrf(&self, headers: &mut HeaderMap, csrf: &str) {
        self.set(headers, &format!("{}={csrf}{}", self.csrf, self.attrs()));
    }

    pub fn clear_both(&self, headers: &mut HeaderMap) {
        self.set(
            headers,
            &format!("{}={}; Max-Age=0; HttpOnly", self.session, self.attrs()),
        );
        self.set(
            headers,
            &format!("{}={}; Max-Age=0", self.csrf, self.attrs()),
        );
    }

    fn set(&self, headers: &mut HeaderMap, value: &str) {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.append(SET_COOKIE, v);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// The value of cookie `name` in the request, if any.
pub fn read(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The CSRF token to hand this request (for a JSON answer or a form's hidden
/// field): the caller's own when its cookie matches its session, otherwise a
/// new one — in a new pre-login session if it has none. Cookies for anything
/// new are added to `out`.
pub(crate) async fn csrf_token_for(
    state: &crate::AppState,
    session: Option<&app::ActiveSession>,
    request: &HeaderMap,
    out: &mut HeaderMap,
) -> Result<String, crate::Problem> {
    use secrecy::ExposeSecret as _;
    let names = state.web.cookie_names();
    match session {
        Some(s) => {
            if let Some(c) =
                read(request, names.csrf).filter(|c| state.app.csrf_cookie_matches(s, c))
            {
                return Ok(c);
            }
            let t = state.app.reissue_csrf(s).await?;
            names.set_csrf(out, t.expose_secret());
            Ok(t.expose_secret().to_owned())
        }
        None => {
            let fresh = state.app.start_anonymous_session().await?;
            names.set_both(
                out,
                fresh.token.expose_secret(),
                fresh.csrf_token.expose_secret(),
            );
            Ok(fresh.csrf_token.expose_secret().to_owned())
        }
    }
}

/// The cookies of a session just issued (sign-in, a completed second step,
/// an enrolment that finished signing in), added to `out`.
pub(crate) fn set_new_session(
    state: &crate::AppState,
    session: &app::NewSession,
    out: &mut HeaderMap,
) {
    use secrecy::ExposeSecret as _;
    state.web.cookie_names().set_both(
        out,
        session.token.expose_secret(),
        session.csrf_token.expose_secret(),
    );
}
