//! Server-rendered pages. (The full web application grows here; for now the
//! front page and the first-run setup page.)

mod setup;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::routes::Routes;

pub(crate) fn routes(r: Routes) -> Routes {
    let r = r.get("/", index).get("/static/vellum.css", stylesheet);
    setup::routes(r)
}

/// The page frame: language set, one stylesheet, no inline script or style.
pub(crate) fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Vellum" }
                link rel="stylesheet" href="/static/vellum.css";
            }
            body { main { (body) } }
        }
    }
}

async fn index() -> Markup {
    layout(
        "Vellum",
        html! {
            h1 { "Vellum" }
            p { "Clinical records and correspondence." }
            p class="hint" { "The JSON API lives under " code { "/api" } "." }
        },
    )
}

async fn stylesheet() -> Response {
    let mut res = include_str!("../../static/vellum.css").into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    res
}
