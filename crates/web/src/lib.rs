//! The web client (PRODUCT.md §4): its files, compiled into the binary, and
//! how each is served. The HTTP layer (`api::web`) routes `/` and `/assets/…`
//! here; nothing is read from disk in a release build, so the one binary is
//! the whole product.
//!
//! Caching: the page itself is always revalidated; every asset it names is
//! immutable under that name. Our own files get their content hash in their
//! name (`app.3f2a….js`), vendored files carry their package version
//! (`tus-js-client-4.3.1.min.js`, pinned with its integrity hash by
//! `scripts/web-vendor`), so a new build never meets an old cached copy.

use std::borrow::Cow;
use std::sync::OnceLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// Our own files, named in `index.html` as `{{name}}` and served under their hashed names.
const HASHED: &[&str] = &["app.js", "app.css"];

/// Everything the page loads comes from this origin; no inline script or
/// style, no plugins, no framing. `blob:` images are the new-post preview,
/// `data:` none today but harmless for images.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The first 12 hex digits of the file's SHA-256: its name's version.
fn content_hash(name: &str) -> String {
    let file = Assets::get(name).expect("hashed assets are embedded");
    let digest = file.metadata.sha256_hash();
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// `app.js` → `app.<hash>.js`.
fn hashed_name(name: &str) -> String {
    let (stem, ext) = name
        .rsplit_once('.')
        .expect("asset names have an extension");
    format!("{stem}.{}.{ext}", content_hash(name))
}

/// The page, with the hashed names of our own files filled in (once).
fn index_html() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| {
        let file = Assets::get("index.html").expect("index.html is embedded");
        let mut page = String::from_utf8(file.data.into_owned()).expect("index.html is UTF-8");
        for name in HASHED {
            page = page.replace(
                &format!("{{{{{name}}}}}"),
                &format!("/assets/{}", hashed_name(name)),
            );
        }
        page
    })
}

/// Headers every response of the client carries.
fn with_page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// `GET /`: the page.
pub fn index() -> Response {
    with_page_headers(
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            index_html(),
        )
            .into_response(),
    )
}

/// `GET /assets/{path}`: an asset under its immutable name, or `None`.
pub fn asset(path: &str) -> Option<Response> {
    let name: Cow<'_, str> = if path.starts_with("vendor/") {
        Cow::Borrowed(path)
    } else {
        // `stem.hash.ext` is served only while `hash` is the file's own.
        let (rest, ext) = path.rsplit_once('.')?;
        let (stem, hash) = rest.rsplit_once('.')?;
        let name = format!("{stem}.{ext}");
        if !HASHED.contains(&name.as_str()) || hash != content_hash(&name) {
            return None;
        }
        Cow::Owned(name)
    };
    let file = Assets::get(&name)?;
    // Licences are kept beside the code they cover, served as text.
    let mime = if name.ends_with(".LICENSE") {
        "text/plain; charset=utf-8".to_owned()
    } else {
        file.metadata.mimetype().to_owned()
    };
    let mut response = (
        StatusCode::OK,
        [(header::CACHE_CONTROL, IMMUTABLE)],
        file.data.into_owned(),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&mime).expect("mime types are header values"),
    );
    Some(with_page_headers(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_our_files_by_their_hash_and_serves_only_those() {
        let page = index_html();
        assert!(!page.contains("{{"), "every placeholder filled: {page}");
        for name in HASHED {
            let hashed = hashed_name(name);
            assert!(page.contains(&format!("/assets/{hashed}")), "{hashed}");
            assert!(asset(&hashed).is_some());
            assert!(asset(name).is_none(), "unhashed names are not served");
        }
        assert!(asset("app.000000000000.js").is_none());
        assert!(asset("vendor/tus-js-client-4.3.1.min.js").is_some());
        assert!(asset("vendor/nothing.js").is_none());
        assert!(asset("index.html").is_none());
    }
}
