//! Letter bodies: Markdown rendered to HTML only through a sanitiser.

/// The allow-list, built once rather than for every letter shown (building
/// it fills its tag, attribute and scheme sets).
static CLEANER: std::sync::LazyLock<ammonia::Builder<'static>> = std::sync::LazyLock::new(|| {
    let mut cleaner = ammonia::Builder::default();
    cleaner
        .link_rel(Some("noopener noreferrer nofollow"))
        .url_schemes(["https", "mailto"].into());
    cleaner
});

/// Renders Markdown and cleans the HTML with an allow-list (ammonia): no
/// script, no event handlers, no `javascript:` links, no raw HTML passes.
pub(crate) fn render(markdown: &str) -> String {
    let mut opts = pulldown_cmark::Options::empty();
    opts.insert(pulldown_cmark::Options::ENABLE_TABLES);
    opts.insert(pulldown_cmark::Options::ENABLE_STRIKETHROUGH);
    let parser = pulldown_cmark::Parser::new_ext(markdown, opts);
    let mut html = String::with_capacity(markdown.len() * 2);
    pulldown_cmark::html::push_html(&mut html, parser);
    CLEANER.clean(&html).to_string()
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn markdown_is_rendered_and_unsafe_html_is_removed() {
        let html = render(
            "# Plan\n\n**Stop** warfarin <script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror=alert(1)>",
        );
        assert!(html.contains("<h1>Plan</h1>"));
        assert!(html.contains("<strong>Stop</strong>"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("javascript:"));
        assert!(!html.contains("onerror"));
    }
}
