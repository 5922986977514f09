//! Bundles: search results and version histories.

use serde_json::{Value, json};

/// One resource in a Bundle, by type, id and content.
pub(crate) struct Entry {
    pub kind: &'static str,
    pub id: String,
    pub resource: Value,
}

/// A `searchset` Bundle with `self` and, when there are more, `next` links.
pub(crate) fn searchset(
    base: &str,
    now_rfc3339: &str,
    self_url: &str,
    next_url: Option<String>,
    entries: Vec<Entry>,
) -> Value {
    let mut link = vec![json!({"relation": "self", "url": self_url})];
    if let Some(next) = next_url {
        link.push(json!({"relation": "next", "url": next}));
    }
    let entry: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            json!({
                "fullUrl": format!("{base}/{}/{}", e.kind, e.id),
                "resource": e.resource,
                "search": {"mode": "match"},
            })
        })
        .collect();
    let mut bundle = json!({
        "resourceType": "Bundle",
        "meta": {"lastUpdated": now_rfc3339},
        "type": "searchset",
        "timestamp": now_rfc3339,
        "link": link,
    });
    if !entry.is_empty() {
        bundle["entry"] = Value::Array(entry);
    }
    bundle
}

/// One version in a `history` Bundle.
pub(crate) struct Version {
    pub version: i64,
    pub recorded_rfc3339: String,
    pub resource: Value,
}

/// A `history` Bundle for one resource, newest version first.
pub(crate) fn history(
    base: &str,
    now_rfc3339: &str,
    kind: &str,
    id: &str,
    mut versions: Vec<Version>,
) -> Value {
    versions.sort_by_key(|v| std::cmp::Reverse(v.version));
    let total = versions.len();
    let entry: Vec<Value> = versions
        .into_iter()
        .map(|v| {
            let (method, url, status) = if v.version == 1 {
                ("POST", kind.to_owned(), "201 Created")
            } else {
                ("PUT", format!("{kind}/{id}"), "200 OK")
            };
            json!({
                "fullUrl": format!("{base}/{kind}/{id}/_history/{}", v.version),
                "resource": v.resource,
                "request": {"method": method, "url": url},
                "response": {
                    "status": status,
                    "etag": format!("W/\"{}\"", v.version),
                    "lastModified": v.recorded_rfc3339,
                },
            })
        })
        .collect();
    json!({
        "resourceType": "Bundle",
        "meta": {"lastUpdated": now_rfc3339},
        "type": "history",
        "timestamp": now_rfc3339,
        "total": total,
        "link": [{"relation": "self", "url": format!("{base}/{kind}/{id}/_history")}],
        "entry": entry,
    })
}
