//! The web client as the server delivers it (its behaviour in a browser is
//! tests/browser): the page at `/` and at each of its own URLs, under a strict
//! Content-Security-Policy with no inline script, and assets that are
//! immutable under their names and compressed.

use crate::helpers::{TestApp, problem};

/// The `src`/`href` of every `/assets/` reference in the page.
fn asset_refs(page: &str) -> Vec<String> {
    page.split('"')
        .filter(|part| part.starts_with("/assets/"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_from_the_binary() {
    let app = TestApp::spawn().await;
    let page = app.get("/", None).await;
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    let csp = headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    // No inline script or style: every script has a src, nothing is in <style>.
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script src=").count() + html.matches("<script type=\"module\" src=").count(),
        "{html}"
    );
    assert!(
        !html.contains("<style") && !html.contains(" style=") && !html.contains(" on"),
        "{html}"
    );

    let refs = asset_refs(&html);
    assert_eq!(refs.len(), 3, "{refs:?}");
    for path in &refs {
        let asset = app
            .client
            .get(app.url(path))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(asset.status(), 200, "{path}");
        assert_eq!(
            asset.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(asset.headers()["content-encoding"], "gzip", "{path}");
        let kind = asset.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            kind.starts_with("text/css") || kind.starts_with("text/javascript"),
            "{kind}"
        );
    }
    // The page's own URLs are the page; anything else under /assets is a 404 problem.
    for path in [
        "/p/0190c1d2-0000-7000-8000-000000000000",
        "/u/alice",
        "/new",
        "/settings",
        "/moderation",
    ] {
        let other = app.get(path, None).await;
        assert_eq!(other.status(), 200, "{path}");
        assert_eq!(other.text().await.unwrap(), html);
    }
    for path in [
        "/assets/app.js",
        "/assets/app.000000000000.js",
        "/assets/index.html",
        "/assets/vendor/none.js",
    ] {
        problem(app.get(path, None).await, 404).await;
    }
}
