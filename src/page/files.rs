//! Files through the page: an upload becomes `/send` of a private copy;
//! a file fetched with `/get` can be downloaded (only those).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{Request, Shared};

#[derive(serde::Deserialize)]
pub(super) struct Named {
    name: String,
}

/// The last part of a browser's file name, made safe to create: no
/// directories, no control characters, at most 200 characters.
fn safe_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    let clean = clean.trim().to_owned();
    (!clean.is_empty() && clean != "." && clean != "..").then_some(clean)
}

/// `POST upload?name=NAME`: the body is saved in a directory of its own
/// (so the end user is offered the file under its own name), then sent
/// with `/send` as if typed.
pub(super) async fn upload(
    State(shared): State<Arc<Shared>>,
    Query(named): Query<Named>,
    body: Body,
) -> (StatusCode, String) {
    let Some(name) = safe_name(&named.name) else {
        return (
            StatusCode::BAD_REQUEST,
            format!("{:?} is not a file name", named.name),
        );
    };
    if shared.link.borrow().is_none() {
        return (StatusCode::CONFLICT, "no session is active".to_owned());
    }
    let dir = shared.uploads.join(uuid::Uuid::new_v4().to_string());
    let path = dir.join(&name);
    if let Err(e) = save(&dir, &path, body).await {
        let _ = tokio::fs::remove_dir_all(&dir).await;
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("saving the upload: {e}"),
        );
    }
    let line = format!("/send {}", path.display());
    match shared.requests.send(Request::Line(line)).await {
        Ok(()) => (StatusCode::ACCEPTED, path.display().to_string()),
        Err(_) => (StatusCode::GONE, "the console has stopped".to_owned()),
    }
}

async fn save(dir: &Path, path: &Path, body: Body) -> std::io::Result<()> {
    tokio::fs::create_dir(dir).await?;
    let mut file = tokio::fs::File::create(path).await?;
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(std::io::Error::other)?;
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    file.sync_all().await
}

/// `GET files/NAME`: a file this console fetched from the end user.
pub(super) async fn download(
    State(shared): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let found: Option<PathBuf> = shared
        .downloads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .rev()
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == name))
        .cloned();
    let Some(path) = found else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let opened = async {
        let file = tokio::fs::File::open(&path).await?;
        let size = file.metadata().await?.len();
        Ok::<_, std::io::Error>((file, size))
    };
    match opened.await {
        Ok((file, size)) => {
            let disposition = format!(
                "attachment; filename=\"{}\"",
                name.replace(['"', '\\'], "_")
            );
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                    (header::CONTENT_LENGTH, size.to_string()),
                ],
                Body::from_stream(tokio_util::io::ReaderStream::new(file)),
            )
                .into_response()
        }
        Err(e) => (StatusCode::GONE, format!("{}: {e}", path.display())).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_name;

    #[test]
    fn browser_file_names_are_made_safe() {
        assert_eq!(safe_name("report.pdf").as_deref(), Some("report.pdf"));
        assert_eq!(safe_name("C:\\Users\\a\\x.txt").as_deref(), Some("x.txt"));
        assert_eq!(safe_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(safe_name("a\nb").as_deref(), Some("ab"));
        assert_eq!(safe_name(".."), None);
        assert_eq!(safe_name("dir/"), None);
        assert_eq!(safe_name("  "), None);
    }
}
