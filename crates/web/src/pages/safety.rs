//! `/admin/safety`: the clinical safety case report, for administrators,
//! made from the hazard log embedded in this binary at build time.

use axum::response::{IntoResponse, Response};
use maud::{PreEscaped, html};

use super::{PageUser, layout, refuse_unless};
use crate::routes::Routes;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/hazards.rs"));
}

pub(super) fn routes(r: Routes) -> Routes {
    r.get("/admin/safety", safety)
}

/// The report, or the problems that stop the log from being read. (CI's
/// `vellum safety check` keeps the latter from shipping.)
fn report() -> Result<String, Vec<String>> {
    let files: Vec<(String, String)> = embedded::HAZARD_FILES
        .iter()
        .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
        .collect();
    let (hazards, problems) = app::safety::parse_log(&files);
    if !problems.is_empty() {
        return Err(problems.iter().map(ToString::to_string).collect());
    }
    let hazards: Vec<_> = hazards.into_iter().map(|(_, h)| h).collect();
    Ok(app::safety::html_fragment(&hazards))
}

async fn safety(PageUser(user): PageUser) -> Response {
    // The safety file is part of running the service: the same right as
    // managing accounts and reading the security log.
    if let Some(r) = refuse_unless(&user, domain::access::Action::ManageUsers) {
        return r;
    }
    match report() {
        Ok(fragment) => layout(
            "Clinical safety file",
            html! {
                p { a href="/" { "Home" } " · " a href="/admin/users" { "Users" } " · " a href="/admin/security" { "Security log" } }
                div class="safety-report" { (PreEscaped(fragment)) }
            },
        )
        .into_response(),
        Err(problems) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            layout(
                "Clinical safety file",
                html! {
                    h1 { "Clinical safety file" }
                    p { "The hazard log built into this server cannot be read:" }
                    ul { @for p in &problems { li { (p) } } }
                },
            ),
        )
            .into_response(),
    }
}
